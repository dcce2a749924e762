// What migrants from http-proxy-middleware rewrite: the path, headers both
// ways, redirects that name an internal host, and cookies' Domain and Path.
// Everything a user function returns is checked here: a value that could
// smuggle a header (CR, LF, NUL) or a name that is not a token is the user's
// bug, reported as PROXY_INTERNAL_ERROR, never sent.

import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { RewriteHookError } from '../contract/errors.js';
import { isHopByHop } from './headers.js';

export type HeaderMap = Record<string, string | string[]>;
/** An object of headers to set (`null` removes one). */
export type HeaderPatch = Readonly<Record<string, string | readonly string[] | null>>;

export type PathRewrite = Readonly<Record<string, string>> | ((path: string, req: IncomingMessage) => string);
/** http-proxy-middleware's shape: one value for every cookie, `false` for none, or a map (`'*'` for any other). */
export type CookieRewrite = string | false | Readonly<Record<string, string>>;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Field values: visible characters, spaces and tabs (RFC 9110 §5.5); never CR, LF or NUL.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** The path rewrite as one function, or `null` without one. Object form: the first rule whose pattern matches is applied (as http-proxy-middleware does). */
export function compilePathRewrite(option: PathRewrite | undefined): ((path: string, req: IncomingMessage) => string) | null {
  if (option === undefined) return null;
  if (typeof option === 'function') return option;
  const rules = Object.entries(option).map(([pattern, replacement]) => ({ pattern: new RegExp(pattern), replacement }));
  return (path) => {
    for (const rule of rules) {
      if (rule.pattern.test(path)) return path.replace(rule.pattern, rule.replacement);
    }
    return path;
  };
}

/** Runs the path rewrite; what it returns must be a path (`/…`), or the hook is at fault. */
export function rewritePath(rewrite: (path: string, req: IncomingMessage) => string, path: string, req: IncomingMessage): string {
  let result: unknown;
  try {
    result = rewrite(path, req);
  } catch (error) {
    throw new RewriteHookError('The `pathRewrite` function threw', { cause: error });
  }
  refusePromise(result, '`pathRewrite` returned a promise; it must return the path itself');
  if (typeof result !== 'string') throw new RewriteHookError(`\`pathRewrite\` returned ${typeof result}, not a path`);
  if (result === '') return '/';
  // The object form's replacement may drop the leading slash (`'^/api': ''`).
  return result.startsWith('/') ? result : `/${result}`;
}

/** Copies `headers` as plain lower-case data a user function may change freely. */
export function plainHeaders(headers: Readonly<Record<string, unknown>>): HeaderMap {
  const copy: HeaderMap = {};
  for (const name in headers) {
    const value = headers[name];
    if (typeof value === 'string') copy[name] = value;
    else if (typeof value === 'number') copy[name] = String(value);
    else if (Array.isArray(value)) copy[name] = value.map(String);
  }
  return copy;
}

/** Applies an object of headers (`null` removes). */
export function patchHeaders(headers: HeaderMap, patch: HeaderPatch): HeaderMap {
  const removed = new Set<string>();
  const patched: HeaderMap = {};
  for (const [name, value] of Object.entries(patch)) {
    if (value === null) removed.add(name.toLowerCase());
    else patched[name.toLowerCase()] = typeof value === 'string' ? value : [...value];
  }
  const result: HeaderMap = {};
  for (const [name, value] of Object.entries(headers)) if (!removed.has(name)) result[name] = value;
  return Object.assign(result, patched);
}

/**
 * Throws `message` when a hook that must answer at once returned a promise.
 * Its rejection, if it comes, is handled here: never an unhandled rejection
 * that would take the host process down.
 */
export function refusePromise(value: unknown, message: string): void {
  if (typeof value !== 'object' || value === null || typeof (value as { then?: unknown }).then !== 'function') return;
  (value as PromiseLike<unknown>).then(undefined, () => undefined);
  throw new RewriteHookError(message);
}

/** What a header hook returned, checked: token names, values without CR/LF/NUL, lower-case keys. */
export function checkedHeaders(value: unknown, hook: string): HeaderMap {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new RewriteHookError(`\`${hook}\` returned ${value === null ? 'null' : typeof value}, not an object of headers`);
  // A promise has no headers of its own: sent as is, the response would lose all of them.
  refusePromise(value, `\`${hook}\` returned a promise; it must return the headers themselves`);
  const headers: HeaderMap = {};
  for (const [name, raw] of Object.entries(value as Record<string, unknown>)) {
    if (raw === undefined || raw === null) continue;
    if (!TOKEN.test(name)) throw new RewriteHookError(`\`${hook}\` returned a header name that is not a token: ${JSON.stringify(name)}`);
    // One value (the usual case) is checked without building an array for it.
    headers[name.toLowerCase()] = Array.isArray(raw) ? (raw as unknown[]).map((item) => fieldValue(item, name, hook)) : fieldValue(raw, name, hook);
  }
  return headers;
}

function fieldValue(item: unknown, name: string, hook: string): string {
  const text = typeof item === 'string' ? item : typeof item === 'number' ? String(item) : null;
  if (text === null || !FIELD_VALUE.test(text)) throw new RewriteHookError(`\`${hook}\` returned a value for ${name} that cannot be sent (CR, LF, NUL, or not a string)`);
  return text;
}

/** The origin and mount path the client used, for redirects that name an upstream host. */
export interface ClientView {
  /** `scheme://host`, as the client addressed the proxy. */
  readonly origin: string;
  /** Where the proxy is mounted (`/api`), '' at the root. */
  readonly mountPath: string;
}

export function clientView(req: IncomingMessage, trustProxy: boolean, mountPath: string): ClientView | null {
  const forwardedProto = trustProxy ? req.headers['x-forwarded-proto'] : undefined;
  const forwardedHost = trustProxy ? req.headers['x-forwarded-host'] : undefined;
  const proto = typeof forwardedProto === 'string' ? forwardedProto.split(',')[0]?.trim() : (req.socket as Partial<TLSSocket>).encrypted === true ? 'https' : 'http';
  const host = typeof forwardedHost === 'string' ? forwardedHost.split(',')[0]?.trim() : req.headers.host;
  if (host === undefined || host === '' || (proto !== 'http' && proto !== 'https')) return null;
  return { origin: `${proto}://${host}`, mountPath };
}

/**
 * A redirect target seen by the client: one at a host of the group moves to
 * the client's origin (and the mount path, when it is under the target's
 * path); a path-absolute one under the target's path gets the mount path;
 * anything else (another site, another path, a relative reference) passes as
 * it is. "A host of the group" is any URL a browser would send to one of the
 * target's host names: scheme-relative (`//internal:8080/`, `/\internal/`),
 * any scheme and port, and, for a loopback target, every loopback spelling
 * (`localhost`, `127.0.0.1`, `[::1]`).
 */
export function rewriteRedirect(value: string, hosts: ReadonlySet<string>, basePath: string, view: ClientView): string {
  // What a browser reads: tabs removed, leading spaces trimmed (Node sends no other control character).
  const spelled = value.replace(/[\t\n\r]/g, '').trimStart();
  if (spelled.startsWith('/') && !/^[/\\]{2}/.test(spelled)) {
    const moved = underBase(spelled, basePath);
    // Never a scheme-relative result (`//evil.example/` from `/v1//evil.example/`
    // with no mount path): the client's own origin keeps it a path here.
    if (moved === null) return value;
    const path = view.mountPath + moved;
    return /^[/\\]{2}/.test(path) ? view.origin + path : path;
  }
  let url: URL;
  try {
    // A scheme-relative reference names a host; any other relative one does not.
    url = /^[/\\]{2}/.test(spelled) ? new URL(spelled, 'http://relative.invalid') : new URL(spelled);
  } catch {
    return value;
  }
  if (!isGroupHost(url, hosts)) return value;
  const path = url.pathname + url.search + url.hash;
  const moved = underBase(path, basePath);
  // Outside the target's path the proxy has no mount for it: the client
  // still never sees the internal host, only its own origin.
  return moved === null ? view.origin + path : view.origin + view.mountPath + moved;
}

/** Whether `url` is at one of the group's host names, whatever its scheme and port. */
function isGroupHost(url: URL, origins: ReadonlySet<string>): boolean {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
  const host = hostName(url.hostname);
  for (const origin of origins) {
    const own = hostName(new URL(origin).hostname);
    if (own === host || (isThisMachine(own) && isThisMachine(host))) return true;
  }
  return false;
}

/** A host name as compared: without the trailing dot of a fully qualified name. */
function hostName(hostname: string): string {
  return hostname.endsWith('.') ? hostname.slice(0, -1) : hostname;
}

/** The spellings of "this machine" an upstream on loopback may use for itself (WHATWG URL has normalised IPv4 forms). */
function isThisMachine(hostname: string): boolean {
  return (
    hostname === 'localhost' ||
    hostname.endsWith('.localhost') ||
    /^127\.\d+\.\d+\.\d+$/.test(hostname) ||
    hostname === '0.0.0.0' ||
    hostname === '[::1]' ||
    hostname === '[::]' ||
    /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(hostname)
  );
}

/** `path` without the target's prefix, or `null` when it is not under it. */
function underBase(path: string, basePath: string): string | null {
  if (basePath === '') return path;
  if (path === basePath) return '/';
  if (path.startsWith(basePath) && /^[/?#]/.test(path.slice(basePath.length))) return path.slice(basePath.length).replace(/^(?=[?#])/, '/');
  return null;
}

/** `Refresh: 5; url=…` with its URL rewritten. */
export function rewriteRefresh(value: string, rewrite: (url: string) => string): string {
  const match = /^(\s*\d+(?:\.\d*)?\s*[;,]\s*url\s*=\s*)(['"]?)(.*?)\2\s*$/i.exec(value);
  if (match === null) return value;
  const [, prefix = '', quote = '', url = ''] = match;
  return `${prefix}${quote}${rewrite(url)}${quote}`;
}

/** `Link: <url>; rel=…, <url>; …` with every target rewritten (RFC 8288). */
export function rewriteLink(value: string, rewrite: (url: string) => string): string {
  return value.replace(/<([^>]*)>/g, (_whole, url: string) => `<${rewrite(url)}>`);
}

/**
 * One cookie's attribute (`domain` or `path`) rewritten by an
 * http-proxy-middleware-shaped rule: every occurrence of it (a browser uses
 * the last), whatever its case and the spaces around `=`.
 */
export function rewriteCookieAttribute(cookie: string, attribute: 'domain' | 'path', rule: CookieRewrite): string {
  if (rule === false) return cookie;
  const [pair = '', ...attributes] = cookie.split(';');
  const kept = [pair];
  for (const part of attributes) {
    const equals = part.indexOf('=');
    const name = (equals === -1 ? part : part.slice(0, equals)).trim();
    if (name.toLowerCase() !== attribute) {
      kept.push(part);
      continue;
    }
    const previous = equals === -1 ? '' : part.slice(equals + 1).trim();
    const next = typeof rule === 'string' ? rule : cookieRule(rule, previous, attribute);
    if (next === undefined) kept.push(part);
    else if (next !== '') kept.push(` ${name}=${next}`);
  }
  return kept.join(';');
}

/** The map's value for `previous` (a Domain also as browsers read it: any case, no leading dot), else its `'*'`. */
function cookieRule(rule: Readonly<Record<string, string>>, previous: string, attribute: 'domain' | 'path'): string | undefined {
  if (Object.hasOwn(rule, previous)) return rule[previous];
  const domain = attribute === 'domain' ? previous.toLowerCase().replace(/^\./, '') : null;
  if (domain !== null && Object.hasOwn(rule, domain)) return rule[domain];
  return Object.hasOwn(rule, '*') ? rule['*'] : undefined;
}

/**
 * What `headers.request` returned, made safe to send: checked, hop-by-hop
 * headers dropped, and what frames the body and the Host kept from `built`,
 * so a hook cannot make the upstream read another body or address another host.
 */
export function hookedRequestHeaders(built: Readonly<HeaderMap>, returned: unknown): HeaderMap {
  const returnedHeaders = checkedHeaders(returned, 'headers.request');
  const headers: HeaderMap = {};
  for (const [name, value] of Object.entries(returnedHeaders)) {
    if (name !== 'content-length' && name !== 'host' && !isHopByHop(name, returnedHeaders)) headers[name] = value;
  }
  if (built['content-length'] !== undefined) headers['content-length'] = built['content-length'];
  if (built.host !== undefined) headers.host = built.host;
  return headers;
}

// The rewriting options: the request path (`pathRewrite`), headers both
// ways (`headers`), redirects and cookies, and `transformResponse` for bodies;
// their defaults and their checks.

import type { IncomingMessage } from 'node:http';
import { checkKeys, fail, HEADER_NAME, isPlainObject, optionalBoolean, positive } from '../option-checks.js';
import { compilePathRewrite, type CookieRewrite, type HeaderMap, type HeaderPatch, type PathRewrite } from './rewrite.js';
import type { TransformResponse } from './transform.js';

/** Rewrites the headers sent upstream: gets a plain copy (lower-case names), returns the headers to send. May be async. */
export type RequestHeadersHook = (headers: HeaderMap, req: IncomingMessage) => Record<string, string | readonly string[]> | Promise<Record<string, string | readonly string[]>>;
/** Rewrites the response headers sent to the client: gets a plain copy, returns the headers to send. */
export type ResponseHeadersHook = (headers: HeaderMap, context: { readonly statusCode: number; readonly req: IncomingMessage }) => Record<string, string | readonly string[]>;

export interface HeaderOptions {
  /** Headers to set (`null` removes) on every upstream request, or a function returning the headers to send. */
  request?: HeaderPatch | RequestHeadersHook;
  /** Headers to set (`null` removes) on every upstream response passed to the client, or a function returning them. */
  response?: HeaderPatch | ResponseHeadersHook;
}

export const REWRITE_DEFAULTS = Object.freeze({ rewriteRedirects: true, transformMaxBytes: 1024 * 1024 });

/** `pathRewrite`, compiled. */
export type ResolvedPathRewrite = (path: string, req: IncomingMessage) => string;

/** `headers`, checked to hold only `request` and `response` (each checked by its own function below). */
export function headerSides(value: unknown): Record<string, unknown> {
  const headers = value ?? {};
  if (!isPlainObject(headers)) fail('headers', 'an object like { request, response }', value);
  checkKeys('headers', headers, ['request', 'response']);
  return headers;
}

export function resolveRequestHeaders(value: unknown): HeaderPatch | RequestHeadersHook | null {
  return resolveHeaderPatch('headers.request', value) as HeaderPatch | RequestHeadersHook | null;
}

export function resolveResponseHeaders(value: unknown): HeaderPatch | ResponseHeadersHook | null {
  return resolveHeaderPatch('headers.response', value) as HeaderPatch | ResponseHeadersHook | null;
}

export function resolveRewriteRedirects(value: unknown): boolean {
  return optionalBoolean('rewriteRedirects', value) ?? REWRITE_DEFAULTS.rewriteRedirects;
}

export function resolvePathRewrite(value: unknown): ResolvedPathRewrite | null {
  if (value === undefined) return null;
  if (typeof value === 'function') return compilePathRewrite(value as PathRewrite);
  if (!isPlainObject(value)) fail('pathRewrite', 'an object of regular expression → replacement, or a function (path, req) => path', value);
  for (const [pattern, replacement] of Object.entries(value)) {
    try {
      new RegExp(pattern);
    } catch {
      fail('pathRewrite', 'an object whose keys are regular expressions', pattern);
    }
    if (typeof replacement !== 'string') fail(`pathRewrite[${JSON.stringify(pattern)}]`, 'a replacement string', replacement);
  }
  return compilePathRewrite(value as Record<string, string>);
}

const HOP_BY_HOP_NAMES = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'http2-settings']);
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

function resolveHeaderPatch(option: string, value: unknown): HeaderPatch | ((...args: never[]) => unknown) | null {
  if (value === undefined) return null;
  if (typeof value === 'function') return value as (...args: never[]) => unknown;
  if (!isPlainObject(value)) fail(option, 'an object of headers (null removes one) or a function', value);
  for (const [name, header] of Object.entries(value)) {
    if (!HEADER_NAME.test(name)) fail(option, 'an object whose keys are header names', name);
    const values = Array.isArray(header) ? header : [header];
    if (header !== null && !values.every((item) => typeof item === 'string' && FIELD_VALUE.test(item))) {
      fail(`${option}.${name}`, 'a header value (string or array of strings, no CR, LF or NUL) or null', header);
    }
    if (name.toLowerCase() === 'host') fail(`${option}.host`, 'left out: the Host header is set by `changeOrigin`', header);
    if (HOP_BY_HOP_NAMES.has(name.toLowerCase())) fail(`${option}.${name}`, 'left out: hop-by-hop headers belong to each connection', header);
  }
  return value as HeaderPatch;
}

export function resolveCookieRewrite(option: string, value: unknown): CookieRewrite {
  if (value === undefined || value === false) return false;
  if (typeof value === 'string') return value;
  if (!isPlainObject(value) || !Object.values(value).every((item) => typeof item === 'string')) {
    fail(option, "a string, false, or an object mapping old values to new ones ('*' for any other)", value);
  }
  return value as Record<string, string>;
}

export function resolveTransform(value: unknown): Readonly<Required<TransformResponse>> | null {
  if (value === undefined) return null;
  if (!isPlainObject(value)) fail('transformResponse', 'an object like { match, transform, maxBytes }', value);
  checkKeys('transformResponse', value, ['match', 'transform', 'maxBytes']);
  if (typeof value.match !== 'function') fail('transformResponse.match', 'a function (statusCode, headers) => boolean', value.match);
  if (typeof value.transform !== 'function') fail('transformResponse.transform', 'a function (body, context) => body', value.transform);
  const maxBytes = positive('transformResponse.maxBytes', value.maxBytes, REWRITE_DEFAULTS.transformMaxBytes, 'a whole number of bytes from 1 to 67108864', (n) => Number.isInteger(n) && n >= 1 && n <= 64 * 1024 * 1024);
  return Object.freeze({ match: value.match as TransformResponse['match'], transform: value.transform as TransformResponse['transform'], maxBytes });
}

// Stale on error (RFC 5861 stale-if-error, RFC 9211 Cache-Status). It is a
// fallback, not a cache: every request goes upstream. Responses a shared
// cache may store are copied while they stream to the client (the attempt
// tees its chunks here), and when an exchange fails before the client got
// anything, the last good response for the request stands in for the 502 if
// its age allows. What may be stored, and how old a response is and how long
// it stays fresh, is http-cache-semantics' decision (`shared: true`); this
// file adds only what a fallback needs on top: the proxy's `maxStale`, the
// directives that forbid ever serving a stale response, and no cookies.

import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { ClientResponse } from '../exchange/client-response.js';
import CachePolicy from 'http-cache-semantics';
import type { Phase } from '../contract/classify.js';
import type { FailureCode } from '../contract/failures.js';
import type { AttemptOutcome, KeepResponse, ResponseTee } from '../exchange/attempt.js';
import type { ResolvedOptions } from '../options.js';
import type { Playback } from './replay.js';
import type { ResolvedStaleIfError } from './stale-options.js';
import type { StaleEntry, StaleResponse, StaleVariants } from './store.js';

/** Plays a kept response back to the client as a live one goes, response hooks included. */
export type Replay = (playback: Playback) => Promise<AttemptOutcome>;

const EMPTY = Buffer.alloc(0);

/** What the layer needs to know of the failure a kept response would hide. */
export interface StaleFailure {
  readonly code: FailureCode;
  readonly phase: Phase | null;
  readonly receivedStatus: number | null;
}

/** What the layer needs to know of an exchange. */
export interface StaleSide {
  readonly req: IncomingMessage;
  readonly res: ClientResponse;
  readonly method: string;
  /** The path sent upstream, with its query. */
  readonly path: string;
  /** Where the proxy is mounted: redirects in a kept response were rewritten for it. */
  readonly mountPath: string;
  readonly requestId: string;
}

/** What was sent in place of the failure. */
export interface StaleServed {
  readonly statusCode: number;
  /** The `Age` sent, in seconds. */
  readonly age: number;
}

/** The longest a store's `get` is waited for; past it, the failure is answered with the contract. */
export const STORE_WAIT_MS = 500;

/*
 * What a kept entry costs the heap, counted high so that the store's bound is
 * a bound on memory (bench/stale-memory.ts measures it against the heap).
 * Each header field is two strings and a slot in a dictionary object: up to
 * about 160 bytes besides its characters in V8 when every name is new (the
 * name is interned), 192 here; each character is counted twice, as a string
 * outside Latin-1 takes. The entry object, its Buffer and the policy's
 * objects take about 900 bytes besides the policy's own text.
 */
const ENTRY_OVERHEAD = 1024;
const FIELD_OVERHEAD = 192;

/**
 * The failures a kept response may hide: every upstream failure before the
 * client got anything, and the proxy's refusals to call a failing or full
 * upstream. Never the client's own faults or the proxy's.
 */
const HIDDEN = new Set<FailureCode>([
  'UPSTREAM_DNS_FAILED',
  'UPSTREAM_UNREACHABLE',
  'UPSTREAM_CONNECT_REFUSED',
  'UPSTREAM_CONNECT_TIMEOUT',
  'UPSTREAM_TLS_FAILED',
  'UPSTREAM_RESET',
  'UPSTREAM_RESPONSE_TIMEOUT',
  'UPSTREAM_BAD_RESPONSE',
  'UPSTREAM_STATUS',
  'CIRCUIT_OPEN',
  'UPSTREAM_OVERLOADED',
]);

/** The response headers http-cache-semantics reads; the rest are not given to it. */
const POLICY_HEADERS = ['cache-control', 'pragma', 'expires', 'date', 'last-modified', 'age', 'vary'] as const;

/** A revalidation that got an error answer, to ask the library whether the origin's `stale-if-error` still allows the stored response. */
const REVALIDATION_REQUEST: CachePolicy.Request = { headers: {} };
const ERROR_ANSWER: CachePolicy.Response = { status: 504, headers: {} };

type HeaderValue = string | number | readonly string[] | undefined;

function headerText(value: HeaderValue): string | undefined {
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(', ') : String(value);
}

/**
 * A Cache-Control or Pragma value as http-cache-semantics can read it: its
 * fields joined into one list, directive names in lower case. The library
 * reads names case-sensitively (`Private` and `No-Store` would slip through),
 * while RFC 9111 §5.2 makes them case-insensitive. Values keep their case.
 */
function normalisedDirectives(value: HeaderValue): string | undefined {
  const text = headerText(value);
  return text?.replace(/(^|,)([^=,]*)/g, (_match, separator: string, name: string) => separator + name.toLowerCase());
}

/** Cache-Control directives (RFC 9111 §5.2), lower-case names to values ('' for none), quotes removed. */
function directives(value: HeaderValue): Map<string, string> {
  const found = new Map<string, string>();
  const text = headerText(value);
  if (text === undefined) return found;
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    const name = (eq === -1 ? part : part.slice(0, eq)).trim().toLowerCase();
    if (name !== '') found.set(name, eq === -1 ? '' : part.slice(eq + 1).trim().replace(/^"|"$/g, ''));
  }
  return found;
}

/** Whether the origin gave a `stale-if-error` with a number of seconds (an unreadable one is no limit). */
function saysStaleIfError(cacheControl: HeaderValue): boolean {
  const value = directives(cacheControl).get('stale-if-error');
  return value !== undefined && /^\d+$/.test(value);
}

/**
 * A stale response is never served under these (RFC 9111 §4.2.4): `no-cache`,
 * `must-revalidate`, `proxy-revalidate`, and `s-maxage`, which carries
 * `proxy-revalidate` for a shared cache (§5.2.2.10).
 */
function forbidsStale(cacheControl: Map<string, string>): boolean {
  return cacheControl.has('no-cache') || cacheControl.has('must-revalidate') || cacheControl.has('proxy-revalidate') || cacheControl.has('s-maxage');
}

/** The request as the policy needs it: no credential and no header it does not read. */
function policyRequest(side: StaleSide): CachePolicy.Request {
  const { headers } = side.req;
  const reduced: CachePolicy.Headers = { host: headers.host };
  if (headers['cache-control'] !== undefined) reduced['cache-control'] = normalisedDirectives(headers['cache-control']);
  if (headers.pragma !== undefined) reduced.pragma = normalisedDirectives(headers.pragma);
  // Only whether there is one matters.
  if (headers.authorization !== undefined) reduced.authorization = 'present';
  return { method: side.method, url: side.path, headers: reduced };
}

function policyResponse(statusCode: number, headers: OutgoingHttpHeaders): CachePolicy.Response {
  const picked: CachePolicy.Headers = {};
  for (const name of POLICY_HEADERS) {
    const value = name === 'cache-control' || name === 'pragma' || name === 'vary' ? normalisedDirectives(headers[name]) : headerText(headers[name]);
    if (value !== undefined) picked[name] = value;
  }
  return { status: statusCode, headers: picked };
}

/** The request header names a response varies on, sorted; `null` for `Vary: *`, which no request matches. */
function varyNames(value: OutgoingHttpHeaders[string]): string[] | null {
  const text = headerText(value);
  if (text === undefined) return [];
  const names = new Set<string>();
  for (const token of text.split(',')) {
    const name = token.trim().toLowerCase();
    if (name === '*') return null;
    if (name !== '') names.add(name);
  }
  return [...names].sort();
}

/** The key of one variant: the URL's key and a hash of the selecting header values (no value is kept in a key). */
function variantKey(primary: string, vary: readonly string[], headers: IncomingHttpHeaders): string {
  const hash = createHash('sha256');
  for (const name of vary) {
    const value = headers[name];
    // An absent header and an empty one select different variants.
    hash.update(value === undefined ? `${name}\n` : `${name}:${Array.isArray(value) ? value.join(', ') : value}\n`);
  }
  return `${primary}\n${hash.digest('base64url')}`;
}

function isEventStream(contentType: OutgoingHttpHeaders[string]): boolean {
  return typeof contentType === 'string' && /^\s*text\/event-stream\s*(?:;|$)/i.test(contentType);
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** A store's `set` or `delete` that fails is ignored: the response the client got is already on its way. */
function ignoreFailure(call: () => unknown): void {
  try {
    const result = call();
    if (isThenable(result)) result.then(undefined, () => undefined);
  } catch {
    // ignored, as above
  }
}

/** Whether a store gave back something this layer can serve (a shared store may hand back anything). */
function isResponse(entry: StaleEntry): entry is StaleResponse {
  const loose = entry as unknown as Record<string, unknown>;
  const { status } = loose;
  return (
    loose.kind === 'response' &&
    typeof status === 'number' &&
    Number.isInteger(status) &&
    status >= 200 &&
    status <= 599 &&
    typeof loose.statusMessage === 'string' &&
    typeof loose.headers === 'object' &&
    loose.headers !== null &&
    loose.body instanceof Uint8Array &&
    typeof loose.policy === 'object' &&
    loose.policy !== null
  );
}

/** The heap the kept headers take (see FIELD_OVERHEAD). */
function headerBytes(headers: Readonly<Record<string, string | readonly string[]>>): number {
  let bytes = 0;
  for (const name in headers) {
    const value = headers[name] ?? [];
    for (const item of typeof value === 'string' ? [value] : value) bytes += FIELD_OVERHEAD + 2 * (name.length + item.length);
  }
  return bytes;
}

/** A response that varies: the request headers that select it, and its own key. */
interface Variant {
  readonly vary: readonly string[];
  readonly key: string;
}

/** Copies one response's body as it streams to the client; kept only if it ends whole and within the limits. */
class Tee implements ResponseTee {
  #chunks: Buffer[] | null = [];
  #bytes = 0;

  constructor(
    private readonly layer: StaleLayer,
    private readonly key: string,
    private readonly variant: Variant | null,
    private readonly policy: CachePolicy,
    private readonly status: number,
    private readonly statusMessage: string,
    private readonly headers: Record<string, string | readonly string[]>,
  ) {}

  write(chunk: Buffer): void {
    const chunks = this.#chunks;
    if (chunks === null || chunk.length === 0) return;
    if (this.#bytes + chunk.length > this.layer.options.maxEntryBytes || !this.layer.reserve(chunk.length)) {
      this.drop();
      return;
    }
    this.#bytes += chunk.length;
    chunks.push(chunk);
  }

  drop(): void {
    if (this.#chunks === null) return;
    this.#chunks = null;
    this.layer.release(this.#bytes);
  }

  end(): void {
    const chunks = this.#chunks;
    if (chunks === null) return;
    this.#chunks = null;
    // One exact, unpooled copy: the chunks are views into the socket's reads.
    const body = Buffer.allocUnsafeSlow(this.#bytes);
    let offset = 0;
    for (const chunk of chunks) offset += chunk.copy(body, offset);
    this.layer.release(this.#bytes);
    const policy = this.policy.toObject() as unknown as Readonly<Record<string, unknown>>;
    const entry: StaleResponse = {
      kind: 'response',
      status: this.status,
      statusMessage: this.statusMessage,
      headers: this.headers,
      body,
      policy,
      // The policy holds the URL and the request and response headers it reads: its text, counted as the headers are.
      size: body.length + headerBytes(this.headers) + 2 * JSON.stringify(policy).length + this.statusMessage.length + ENTRY_OVERHEAD,
    };
    this.layer.keep(this.key, this.variant, entry);
  }
}

/** One proxy's stale-on-error: what it keeps, and what it may serve. */
export class StaleLayer {
  /** Bytes held by copies of responses still streaming. */
  #copying = 0;

  constructor(
    readonly options: ResolvedStaleIfError,
    private readonly config: Pick<ResolvedOptions, 'upstream' | 'proxyName' | 'requestIdHeader'>,
  ) {}

  /** The URL's key: the method, the upstream, the Host the client asked for, the mount path and the upstream path. */
  #key(method: string, side: StaleSide): string {
    return `${method}\n${this.config.upstream}\n${side.req.headers.host ?? ''}\n${side.mountPath}\n${side.path}`;
  }

  /** For the attempts of `side`: decides, when a response head goes to the client, whether to copy it. */
  keeper(side: StaleSide): KeepResponse | null {
    const { method } = side;
    if (method !== 'GET' && method !== 'HEAD') return null;
    return (statusCode, statusMessage, headers) => {
      try {
        return this.#tee(side, statusCode, statusMessage, headers);
      } catch {
        // Whatever went wrong, the response itself goes on unkept.
        return null;
      }
    };
  }

  #tee(side: StaleSide, statusCode: number, statusMessage: string | undefined, headers: OutgoingHttpHeaders): ResponseTee | null {
    // A server error is no new version of the resource: it neither replaces
    // the kept response nor is kept itself. Another client's cookie is never
    // handed out (http-cache-semantics would keep a `public` response that
    // sets one), and an event stream is no resource to replay.
    if (statusCode >= 500 || headers['set-cookie'] !== undefined || isEventStream(headers['content-type'])) return null;
    // Only what the origin said may be shared is kept, never a heuristic
    // guess (nginx's rule): a page built for one user's cookie with no
    // Cache-Control at all must not reach another user. A request that
    // carries a cookie needs the origin to have said `public` or `s-maxage`,
    // as one with Authorization does.
    const cacheControl = directives(headers['cache-control']);
    const explicit = cacheControl.has('max-age') || cacheControl.has('s-maxage') || cacheControl.has('public') || headers.expires !== undefined;
    if (!explicit) return null;
    if (side.req.headers.cookie !== undefined && !cacheControl.has('public') && !cacheControl.has('s-maxage')) return null;
    if (side.method === 'GET' && Number(headers['content-length']) > this.options.maxEntryBytes) return null;
    const policy = new CachePolicy(policyRequest(side), policyResponse(statusCode, headers), { shared: true });
    if (!policy.storable()) return null;
    const vary = varyNames(headers.vary);
    // Stale already, and forbidden to be served stale: it could never be used.
    if (vary === null || (policy.stale() && forbidsStale(directives(headers['cache-control'])))) return null;
    // A dictionary from the start: an object built property by property makes
    // V8 add a hidden class per new name, far more than the fields themselves.
    const kept = Object.create(null) as Record<string, string | readonly string[]>;
    for (const name in headers) {
      const value = headers[name];
      if (value !== undefined) kept[name] = typeof value === 'number' ? String(value) : typeof value === 'string' ? value : [...value];
    }
    const key = this.#key(side.method, side);
    const variant = vary.length === 0 ? null : { vary, key: variantKey(key, vary, side.req.headers) };
    return new Tee(this, key, variant, policy, statusCode, statusMessage ?? '', kept);
  }

  /** Counts `bytes` more being copied; `false` when that would pass `maxBytes`. */
  reserve(bytes: number): boolean {
    if (this.#copying + bytes > this.options.maxBytes) return false;
    this.#copying += bytes;
    return true;
  }

  release(bytes: number): void {
    this.#copying -= bytes;
  }

  /** Stores a whole response: under its URL's key, or, when it varies, under its variant's key with the URL's key naming the headers. */
  keep(key: string, variant: Variant | null, entry: StaleResponse): void {
    const { store } = this.options;
    const ttl = this.#usefulFor(entry);
    if (variant === null) {
      ignoreFailure(() => store.set(key, entry, ttl));
      return;
    }
    const variants: StaleVariants = { kind: 'variants', vary: variant.vary, size: ENTRY_OVERHEAD + variant.vary.reduce((sum, name) => sum + FIELD_OVERHEAD + 2 * name.length, 0) };
    ignoreFailure(() => store.set(key, variants, ttl));
    ignoreFailure(() => store.set(variant.key, entry, ttl));
  }

  /**
   * How long a kept response can stand in for a failure, in ms: while fresh,
   * then for the origin's `stale-if-error` when it gave one (unless
   * `maxStaleOverridesOrigin`), else for `maxStale`.
   */
  #usefulFor(entry: StaleResponse): number {
    const policy = CachePolicy.fromObject(entry.policy as unknown as CachePolicy.CachePolicyObject);
    const staleIfError = Number(directives(entry.headers['cache-control']).get('stale-if-error'));
    const origin = Number.isFinite(staleIfError) ? staleIfError * 1000 : null;
    const window = origin === null ? this.options.maxStale : this.options.maxStaleOverridesOrigin ? Math.max(this.options.maxStale, origin) : origin;
    return policy.timeToLive() + window;
  }

  /** Whether a kept response may stand in for this failure at all. */
  covers(side: StaleSide, failure: StaleFailure): boolean {
    return (side.method === 'GET' || side.method === 'HEAD') && HIDDEN.has(failure.code) && failure.phase !== 'body' && !side.res.headersSent;
  }

  /**
   * Answers `side` with a kept response in place of `failure`, played back
   * through `replay` (the response hooks run for this request); `null` when
   * there is none it may use, or the playback failed before anything was
   * sent (the caller sends the contract).
   */
  async serve(side: StaleSide, failure: StaleFailure, replay: Replay): Promise<StaleServed | null> {
    const found = await this.#lookup(side);
    const { res } = side;
    if (found === null || res.headersSent || res.destroyed || res.writableEnded) return null;
    const { entry, age, fromGet } = found;
    // A clock set back since the response was kept must not make it younger than new.
    const seconds = Math.max(0, Math.floor(age));
    let cacheStatus = `${this.config.proxyName}; fwd=stale`;
    if (failure.receivedStatus !== null) cacheStatus += `; fwd-status=${failure.receivedStatus}`;
    cacheStatus += `; detail=${failure.code}`;
    const earlier = headerText(entry.headers['cache-status']);
    const headers: IncomingHttpHeaders = {};
    for (const name in entry.headers) {
      const value = entry.headers[name];
      if (value !== undefined) headers[name] = typeof value === 'string' ? value : [...value];
    }
    headers.age = String(seconds);
    // A list, nearest the origin first (RFC 9211 §2): this proxy comes last.
    headers['cache-status'] = earlier === undefined ? cacheStatus : `${earlier}, ${cacheStatus}`;
    headers[this.config.requestIdHeader] = side.requestId;
    if (fromGet && headers['content-length'] === undefined) headers['content-length'] = String(entry.body.length);
    const outcome = await replay({ status: entry.status, statusMessage: entry.statusMessage, headers, body: side.method === 'HEAD' ? EMPTY : entry.body });
    // Failed with its head already out: the attempt cut the connection, as for a live response.
    if (outcome.kind !== 'delivered' && !(outcome.kind === 'failed' && outcome.phase === 'body')) return null;
    return { statusCode: entry.status, age: seconds };
  }

  async #lookup(side: StaleSide): Promise<{ entry: StaleResponse; age: number; fromGet: boolean } | null> {
    const { headers } = side.req;
    const requestCacheControl = directives(headers['cache-control']);
    // The client wants no stored response without validation (RFC 9111 §5.2.1.4).
    if (requestCacheControl.has('no-cache') || (headers['cache-control'] === undefined && directives(headers.pragma).has('no-cache'))) return null;
    // A HEAD may be answered from its own kept response or from the GET's.
    for (const method of side.method === 'HEAD' ? ['HEAD', 'GET'] : ['GET']) {
      let key = this.#key(method, side);
      let entry = await this.#get(key);
      if (entry?.kind === 'variants') {
        key = Array.isArray(entry.vary) ? variantKey(key, entry.vary, headers) : '';
        entry = key === '' ? undefined : await this.#get(key);
      }
      if (entry === undefined) continue;
      if (!isResponse(entry)) {
        this.#delete(key);
        continue;
      }
      const age = this.#usableAge(key, entry, requestCacheControl);
      if (age !== null) return { entry, age, fromGet: method === 'GET' };
    }
    return null;
  }

  /** The entry's age in seconds when it may be served now, else `null`. */
  #usableAge(key: string, entry: StaleResponse, requestCacheControl: Map<string, string>): number | null {
    let policy: CachePolicy;
    try {
      policy = CachePolicy.fromObject(entry.policy as unknown as CachePolicy.CachePolicyObject);
    } catch {
      this.#delete(key);
      return null;
    }
    const age = policy.age();
    if (!policy.stale()) return age;
    if (forbidsStale(directives(entry.headers['cache-control']))) {
      // It only gets older: it can never be served again.
      this.#delete(key);
      return null;
    }
    const staleness = age - policy.maxAge();
    // RFC 5861 as the library implements it: a revalidation answered with an
    // error keeps the stored response while its `stale-if-error` allows.
    const originAllows = (): boolean => !policy.revalidatedPolicy(REVALIDATION_REQUEST, ERROR_ANSWER).modified;
    // The origin said how long its response may hide an error: that is the
    // window, not one limit among others, unless the user said otherwise.
    if (!this.options.maxStaleOverridesOrigin && saysStaleIfError(entry.headers['cache-control'])) return originAllows() ? age : null;
    if (staleness * 1000 <= this.options.maxStale || originAllows()) return age;
    const maxStale = requestCacheControl.get('max-stale');
    if (maxStale !== undefined && (maxStale === '' || staleness <= Number(maxStale))) return age;
    return null;
  }

  async #get(key: string): Promise<StaleEntry | undefined> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const result = this.options.store.get(key);
      if (!isThenable(result)) return result;
      const late = new Promise<undefined>((resolve) => {
        timer = setTimeout(resolve, STORE_WAIT_MS, undefined);
      });
      return await Promise.race([result, late]);
    } catch {
      return undefined;
    } finally {
      if (timer !== undefined) clearTimeout(timer);
    }
  }

  #delete(key: string): void {
    const { store } = this.options;
    ignoreFailure(() => store.delete(key));
  }
}

/** The layer for a proxy's options, or `null` when `staleIfError` is off. */
export function staleLayer(config: ResolvedOptions): StaleLayer | null {
  return config.staleIfError === null ? null : new StaleLayer(config.staleIfError, config);
}

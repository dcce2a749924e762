// Header hygiene in both directions: what http-proxy used to do for us.
// Hop-by-hop headers (RFC 9110 §7.6.1) and any header a `Connection` field
// names stay on their own hop; X-Forwarded-* describe the client's hop.

import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { joinVary } from '../contract/problem.js';
import type { TLSSocket } from 'node:tls';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);

// Not hop-by-hop, but meaningless (or unsupported by undici) once the proxy
// has answered them itself: Node already sent `100 Continue` to the client.
const REQUEST_ONLY_THIS_HOP = new Set(['expect', 'host']);

function connectionTokens(value: string | string[] | undefined): Set<string> | null {
  // The common values name no header to strip beyond the hop-by-hop list.
  if (value === undefined || value === 'keep-alive' || value === 'close') return null;
  const joined = Array.isArray(value) ? value.join(',') : value;
  const tokens = new Set<string>();
  for (const token of joined.split(',')) {
    const name = token.trim().toLowerCase();
    if (name !== '') tokens.add(name);
  }
  return tokens.size === 0 ? null : tokens;
}

/** Whether `name` stays on this hop: a hop-by-hop header, or one that `headers`' Connection names. */
export function isHopByHop(name: string, headers: Readonly<Record<string, unknown>>): boolean {
  if (HOP_BY_HOP.has(name)) return true;
  const connection = headers.connection;
  return typeof connection === 'string' && connectionTokens(connection)?.has(name) === true;
}

export interface ForwardContext {
  readonly requestIdHeader: string;
  readonly requestId: string;
  /** Host header to send: the target's host by default, the client's with `changeOrigin: false`. */
  readonly host: string | undefined;
  /** Keep the forwarding headers the client sent (X-Forwarded-*, Forwarded, X-Real-IP). */
  readonly trustProxy: boolean;
  /** The retry attempt header: the proxy's own, never the client's (the default name when retries are off). */
  readonly attemptHeader: string;
}

/**
 * Headers that describe the hops before this proxy. Sent by a client, they
 * are whatever it wants the upstream to believe (its address, the host and
 * prefix an upstream builds links from); kept only with `trustProxy`. One the
 * app set itself (an auth layer's `X-Forwarded-User`) is the app's and passes.
 */
function isForwarding(name: string): boolean {
  return name.startsWith('x-forwarded-') || name === 'forwarded' || name === 'x-real-ip';
}

/**
 * Whether the client itself sent `name` with the value it has now. A header
 * the app set or replaced on `req.headers` is the app's, and a client's
 * `Connection` field must not strip it. `rawHeaders` is what came off the
 * wire; Node joins repeated fields with `, ` (`; ` for Cookie) or keeps the first.
 */
function sentByClient(req: IncomingMessage, name: string, value: string | string[]): boolean {
  const raw: string[] = [];
  const { rawHeaders } = req;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]?.toLowerCase() === name) raw.push(rawHeaders[i + 1] ?? '');
  }
  if (raw.length === 0) return false;
  if (Array.isArray(value)) return value.length === raw.length && value.every((item, i) => item === raw[i]);
  return value === raw[0] || value === raw.join(', ') || value === raw.join('; ');
}

/** The headers sent upstream for `req`. */
export function upstreamRequestHeaders(req: IncomingMessage, context: ForwardContext): Record<string, string | string[]> {
  const incoming = req.headers;
  const named = connectionTokens(incoming.connection);
  const headers: Record<string, string | string[]> = {};
  for (const name in incoming) {
    const value = incoming[name];
    if (value === undefined || HOP_BY_HOP.has(name) || REQUEST_ONLY_THIS_HOP.has(name) || name === context.attemptHeader) continue;
    // Only what the client itself sent: a header the app set is the app's.
    if ((!context.trustProxy && isForwarding(name)) || named?.has(name) === true) {
      if (sentByClient(req, name, value)) continue;
    }
    headers[name] = value;
  }
  if (incoming.te !== undefined && /(?:^|,)\s*trailers\s*(?:,|$)/i.test(String(incoming.te))) {
    headers.te = 'trailers';
  }
  if (context.host !== undefined) headers.host = context.host;

  const clientAddress = req.socket.remoteAddress;
  if (clientAddress !== undefined) {
    const previous = headers['x-forwarded-for'];
    headers['x-forwarded-for'] = previous === undefined ? clientAddress : `${String(previous)}, ${clientAddress}`;
  }
  const proto = headers['x-forwarded-proto'];
  const host = headers['x-forwarded-host'];
  if (typeof proto !== 'string') headers['x-forwarded-proto'] = (req.socket as Partial<TLSSocket>).encrypted === true ? 'https' : 'http';
  if (typeof host !== 'string') {
    if (incoming.host !== undefined) headers['x-forwarded-host'] = incoming.host;
    else delete headers['x-forwarded-host'];
  }
  headers[context.requestIdHeader] = context.requestId;
  return headers;
}

/** The upstream response headers that may be passed to the client. */
export function clientResponseHeaders(upstream: IncomingHttpHeaders): OutgoingHttpHeaders {
  const named = connectionTokens(upstream.connection);
  const headers: OutgoingHttpHeaders = {};
  for (const name in upstream) {
    if (HOP_BY_HOP.has(name) || named?.has(name) === true) continue;
    const value = upstream[name];
    if (value !== undefined) headers[name] = value;
  }
  return headers;
}

const REQUEST_ID = /^[\x21-\x7e]{1,200}$/;
/**
 * Where a request keeps its id: a symbol-keyed property, not a WeakMap (a
 * WeakMap lookup cost about 2 µs per request against 0.2 µs, measured in
 * issue 20). A symbol from the global registry, so the ESM and CJS builds
 * loaded side by side agree on it; serializers (JSON, pino) skip symbol keys.
 */
const ID = Symbol.for('resilient-proxy.request-id');

type WithId = IncomingMessage & { [ID]?: string };

function saneId(value: unknown): string | null {
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
  return typeof value === 'string' && REQUEST_ID.test(value) ? value : null;
}

/**
 * The request id of `req`, the same every time it is asked: the client's
 * `header` when it is a sane token, else an id the app already gave the
 * request (`req.id`, as pino-http and others set it; Fastify's `request.id`
 * through its adapter), else a fresh UUID. The proxy
 * uses this id upstream and in error bodies; a logger that asks for it (for
 * example pino-http's `genReqId`) logs the same one.
 */
export function requestId(req: IncomingMessage, header = 'x-request-id', appId: unknown = (req as IncomingMessage & { id?: unknown }).id): string {
  let id = (req as WithId)[ID];
  if (id === undefined) {
    id = saneId(req.headers[header]) ?? saneId(appId) ?? randomUUID();
    (req as WithId)[ID] = id;
  }
  return id;
}

/**
 * The upstream's headers, joined with the list-valued headers the app set on
 * the response before the proxy ran (cors's `Vary: Origin`, a cookie set by
 * the app): `writeHead` would otherwise replace them.
 */
export function withAppHeaders(res: Pick<ServerResponse, 'getHeader'>, headers: OutgoingHttpHeaders): OutgoingHttpHeaders {
  const vary = res.getHeader('vary');
  if (vary !== undefined && headers.vary !== undefined) headers.vary = joinVary(vary, headers.vary);
  const cookies = res.getHeader('set-cookie');
  if (cookies !== undefined && headers['set-cookie'] !== undefined) {
    const own = Array.isArray(cookies) ? cookies : [String(cookies)];
    const theirs = headers['set-cookie'];
    headers['set-cookie'] = [...own, ...(Array.isArray(theirs) ? theirs : [theirs])];
  }
  return headers;
}

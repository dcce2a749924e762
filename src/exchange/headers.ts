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
  /** Host header to send: the target's host with changeOrigin, else the client's. */
  readonly host: string | undefined;
  /** Keep the client's X-Forwarded-Proto and X-Forwarded-Host. */
  readonly trustProxy: boolean;
}

/** The headers sent upstream for `req`. */
export function upstreamRequestHeaders(req: IncomingMessage, context: ForwardContext): Record<string, string | string[]> {
  const incoming = req.headers;
  const named = connectionTokens(incoming.connection);
  const headers: Record<string, string | string[]> = {};
  for (const name in incoming) {
    if (HOP_BY_HOP.has(name) || REQUEST_ONLY_THIS_HOP.has(name) || named?.has(name) === true) continue;
    const value = incoming[name];
    if (value !== undefined) headers[name] = value;
  }
  if (incoming.te !== undefined && /(?:^|,)\s*trailers\s*(?:,|$)/i.test(String(incoming.te))) {
    headers.te = 'trailers';
  }
  if (context.host !== undefined) headers.host = context.host;

  const clientAddress = req.socket.remoteAddress;
  if (clientAddress !== undefined) {
    const previous = incoming['x-forwarded-for'];
    headers['x-forwarded-for'] = previous === undefined ? clientAddress : `${String(previous)}, ${clientAddress}`;
  }
  const proto = incoming['x-forwarded-proto'];
  const host = incoming['x-forwarded-host'];
  headers['x-forwarded-proto'] =
    context.trustProxy && typeof proto === 'string' ? proto : (req.socket as Partial<TLSSocket>).encrypted === true ? 'https' : 'http';
  if (context.trustProxy && typeof host === 'string') headers['x-forwarded-host'] = host;
  else if (incoming.host !== undefined) headers['x-forwarded-host'] = incoming.host;
  else delete headers['x-forwarded-host'];
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
const ids = new WeakMap<IncomingMessage, string>();

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
  let id = ids.get(req);
  if (id === undefined) {
    id = saneId(req.headers[header]) ?? saneId(appId) ?? randomUUID();
    ids.set(req, id);
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

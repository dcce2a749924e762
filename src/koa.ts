// Koa adapter: a middleware that sets the proxied response (or the error
// contract) on the context, status, headers and a body stream, so koa-compress,
// koa-logger and the middleware around it see it and Koa sends it. It passes on
// a body a Koa body parser already read. It translates only; every policy is in
// the core.

import type { IncomingMessage, OutgoingHttpHeader, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { FrameworkResponse } from './exchange/client-response.js';
import type { ProxyOptions } from './options.js';
import type { StaticTarget } from './upstream/target-options.js';
import { createProxyHandler, type UpgradeOptions } from './proxy.js';

/** The part of a Koa 2 or 3 context the adapter uses. */
export interface KoaContextLike {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly method: string;
  status: number;
  message: string;
  body: unknown;
  /** koa-compress's per-response switch. */
  compress?: unknown;
  set(field: string, value: string | string[]): void;
  remove(field: string): void;
  readonly request: { readonly body?: unknown; readonly rawBody?: unknown };
  /** The request target as the client sent it, before koa-mount stripped its path: what `req.url` shows in hooks. */
  readonly originalUrl?: string;
  /** Set by koa-mount: where the proxy is mounted, for redirects. */
  readonly mountPath?: string | undefined;
}

export interface KoaProxyMiddleware {
  (ctx: KoaContextLike, next?: () => Promise<unknown>): Promise<void>;
  /** The upstream's key: its name, or its origin(s). */
  readonly upstream: string;
  /** Replaces the hosts of the group at run time, in the same shape as `target`. */
  setTargets(target: StaticTarget): void;
  /** Handles the server's `'upgrade'` event (WebSocket): `server.on('upgrade', (req, socket, head) => middleware.upgrade(req, socket, head, { mountPath: '/api' }))`. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, options?: UpgradeOptions): Promise<void>;
  /** Closes the proxy's own connection pool. */
  close(): Promise<void>;
}

const EMPTY = Buffer.alloc(0);

/** The core's response, set on Koa's context; `sent` is told once Koa has it. */
function contextResponse(ctx: KoaContextLike, sent: () => void): FrameworkResponse {
  return new FrameworkResponse({
    raw: ctx.res,
    getHeader: (name) => ctx.res.getHeader(name),
    setHeader: (name, value: OutgoingHttpHeader) => ctx.set(name, typeof value === 'number' ? String(value) : value),
    removeHeader: (name) => ctx.remove(name),
    status: (statusCode, statusMessage) => {
      ctx.status = statusCode;
      if (statusMessage !== undefined) ctx.message = statusMessage;
    },
    send: (body, flush) => {
      // koa-compress cannot flush per chunk: a response that must not wait is sent as it comes.
      if (flush) ctx.compress = false;
      // Left unset for HEAD, Koa keeps the Content-Length the upstream announced.
      if (body !== null) ctx.body = body;
      else if (ctx.method !== 'HEAD') ctx.body = EMPTY;
      sent();
    },
  });
}

/**
 * `app.use(mount('/api', koaProxy({ target })))` or on a router. The proxy
 * answers every request it gets; it never calls `next`. The returned promise
 * settles once the response is on the context (status, headers and a body
 * stream, or the error contract), or the client left; Koa then sends it
 * through the middleware that awaited `next()`: koa-compress compresses it,
 * koa-logger logs its real status, end and duration (`-x-` for a cut one).
 * Works on Koa 2 and 3.
 */
export function koaProxy(options: ProxyOptions): KoaProxyMiddleware {
  const handler = createProxyHandler(options);
  const middleware = (ctx: KoaContextLike): Promise<void> =>
    new Promise<void>((resolve) => {
      const { body, rawBody } = ctx.request;
      const parsed = body === undefined ? undefined : { parsed: body, raw: rawBody };
      void handler.handle(ctx.req, contextResponse(ctx, resolve), { body: parsed, mountPath: ctx.mountPath ?? '', originalUrl: ctx.originalUrl }).then(resolve);
    });
  return Object.assign(middleware, {
    upstream: handler.upstream,
    setTargets: (target: StaticTarget) => handler.setTargets(target),
    upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer, upgradeOptions?: UpgradeOptions) => handler.upgrade(req, socket, head, upgradeOptions),
    close: () => handler.close(),
  });
}

// Koa adapter: a middleware that hands the raw request and response to the
// proxy (ctx.respond = false), passing on a body a Koa body parser already
// read. It translates only; every policy is in the core.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ProxyOptions } from './options.js';
import { createProxyHandler } from './proxy.js';

/** The part of a Koa 2 or 3 context the adapter uses. */
export interface KoaContextLike {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  // `| undefined` so Koa's own context fits under exactOptionalPropertyTypes.
  respond?: boolean | undefined;
  readonly request: { readonly body?: unknown; readonly rawBody?: unknown };
}

export interface KoaProxyMiddleware {
  (ctx: KoaContextLike, next?: () => Promise<unknown>): Promise<void>;
  /** The upstream's key: its name, or its origin. */
  readonly upstream: string;
  /** Closes the proxy's own connection pool. */
  close(): Promise<void>;
}

/** Settles once the response is over: finished, or its connection gone. */
function responseDone(res: ServerResponse): Promise<void> {
  if (res.writableFinished || res.destroyed) return Promise.resolve();
  return new Promise((resolve) => res.once('close', () => resolve()));
}

/**
 * `app.use(mount('/api', koaProxy({ target })))` or on a router. The proxy
 * answers every request it gets; it never calls `next`. The returned promise
 * settles when the response is over, so middleware that awaits `next()`
 * (koa-logger, timers) sees the status the client got and the real
 * duration. Works on Koa 2 and 3.
 */
export function koaProxy(options: ProxyOptions): KoaProxyMiddleware {
  const handler = createProxyHandler(options);
  const middleware = (ctx: KoaContextLike): Promise<void> => {
    ctx.respond = false;
    const { body, rawBody } = ctx.request;
    const done = responseDone(ctx.res);
    handler.handle(ctx.req, ctx.res, body === undefined ? undefined : { body: { parsed: body, raw: rawBody } });
    return done;
  };
  return Object.assign(middleware, { upstream: handler.upstream, close: () => handler.close() });
}

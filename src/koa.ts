// Koa adapter: a middleware that hands the raw request and response to the
// proxy (ctx.respond = false), passing on a body a Koa body parser already
// read. It translates only; every policy is in the core.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ProxyOptions, StaticTarget } from './options.js';
import { createProxyHandler, type UpgradeOptions } from './proxy.js';

/** The part of a Koa 2 or 3 context the adapter uses. */
export interface KoaContextLike {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  // `| undefined` so Koa's own context fits under exactOptionalPropertyTypes.
  respond?: boolean | undefined;
  readonly request: { readonly body?: unknown; readonly rawBody?: unknown };
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


/**
 * `app.use(mount('/api', koaProxy({ target })))` or on a router. The proxy
 * answers every request it gets; it never calls `next`. The returned promise
 * settles once the response's status is sent (its head went out, or the
 * error contract was written, or the client left), so middleware that awaits
 * `next()` sees the status the client got, and koa-logger, which waits for
 * the response's end from there, logs its real end and duration. Works on
 * Koa 2 and 3.
 */
export function koaProxy(options: ProxyOptions): KoaProxyMiddleware {
  const handler = createProxyHandler(options);
  const middleware = (ctx: KoaContextLike): Promise<void> => {
    ctx.respond = false;
    const { body, rawBody } = ctx.request;
    // Settles once the status the client gets is known and the response is
    // on its way: its head went out, or the proxy is done with it. A logger
    // that waits for the response's end from here (koa-logger) sees its real
    // end, a completed one or a cut one.
    return new Promise<void>((resolve) => {
      const parsed = body === undefined ? undefined : { parsed: body, raw: rawBody };
      void handler.handle(ctx.req, ctx.res, { body: parsed, onHead: resolve, mountPath: ctx.mountPath ?? '' }).then(resolve);
    });
  };
  return Object.assign(middleware, {
    upstream: handler.upstream,
    setTargets: (target: StaticTarget) => handler.setTargets(target),
    upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer, upgradeOptions?: UpgradeOptions) => handler.upgrade(req, socket, head, upgradeOptions),
    close: () => handler.close(),
  });
}

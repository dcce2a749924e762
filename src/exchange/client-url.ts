// `req.url` as user functions see it: the request target as the client sent
// it, mount prefix included, in every framework. Express and koa-mount strip
// their mount path from `req.url` while the proxy runs, Fastify and a
// node:http 'upgrade' event do not: the same hook would see two shapes. The
// client's target is shown only while a user function runs, and the host's
// own value is put back as soon as it returns or settles, so the middleware
// around the proxy never sees a changed `req.url`.

import type { IncomingMessage } from 'node:http';

/**
 * The request target as the client sent it: the adapter's (`ctx.originalUrl`
 * on Koa), else `req.originalUrl` (Express, Connect; a node:http app that
 * strips a prefix by hand may set it the same way), else `req.url`.
 */
export function clientUrlOf(req: IncomingMessage, given?: string): string {
  if (given !== undefined) return given;
  const original = (req as IncomingMessage & { originalUrl?: unknown }).originalUrl;
  return typeof original === 'string' ? original : (req.url ?? '/');
}

/** Shows `url` as `req.url` until the returned function is called, which puts the host's value back. */
export function showClientUrl(req: IncomingMessage, url: string): () => void {
  const own = req.url;
  if (own === url) return () => undefined;
  req.url = url;
  return () => {
    req.url = own;
  };
}

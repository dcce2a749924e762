// Fastify adapter: a plugin registered under a prefix. It translates only:
// it takes over the raw response (reply.hijack()), leaves request bodies
// unparsed as raw streams inside its own encapsulation context (the app's
// parsers elsewhere are untouched), and strips its prefix from the path.

import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import type { ProxyOptions } from './options.js';
import { createProxyHandler, type ProxyHandler } from './proxy.js';

/** The proxy's options; Fastify's own `prefix` (stripped from the path before forwarding) goes beside them. */
export type FastifyProxyOptions = ProxyOptions;

// The methods Fastify 4 and 5 both route.
const METHODS = ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'];
// Options Fastify's register() reads itself and passes on to the plugin.
const REGISTER_OPTIONS = new Set(['prefix', 'logLevel', 'logSerializers']);

function withoutPrefix(url: string, prefix: string): string {
  if (prefix === '' || !url.startsWith(prefix)) return url;
  const rest = url.slice(prefix.length);
  return rest.startsWith('/') ? rest : `/${rest}`;
}

/**
 * `app.register(fastifyProxy, { prefix: '/api', target: 'http://orders:8080' })`:
 * `/api/x` is forwarded as `/x` (plus the target's own path prefix), with the
 * same error contract as `createProxy`. Works on Fastify 4 and 5.
 */
export const fastifyProxy: FastifyPluginCallback<FastifyProxyOptions> = (instance, options, done) => {
  const proxyOptions = Object.fromEntries(Object.entries(options).filter(([key]) => !REGISTER_OPTIONS.has(key)));
  let handler: ProxyHandler;
  try {
    handler = createProxyHandler(proxyOptions as unknown as ProxyOptions);
  } catch (error) {
    // A bad option is register()'s and ready()'s error, not an exception
    // thrown from inside Fastify's plugin loader.
    done(error as Error);
    return;
  }
  // Bodies stay raw streams: the proxy forwards them as they arrive.
  instance.removeAllContentTypeParsers();
  instance.addContentTypeParser('*', (_request, _payload, parsed) => {
    parsed(null);
  });
  const forward = (request: FastifyRequest, reply: FastifyReply): void => {
    // Headers set through reply.header() (by @fastify/cors, @fastify/rate-limit,
    // hooks) live in Fastify's own map until Fastify sends the reply; once
    // hijacked it never does, so they are put on the raw response here.
    for (const [name, value] of Object.entries(reply.getHeaders())) {
      if (value !== undefined && !reply.raw.hasHeader(name)) reply.raw.setHeader(name, value);
    }
    reply.hijack();
    void handler.handle(request.raw, reply.raw, {
      url: withoutPrefix(request.raw.url ?? '/', instance.prefix),
      requestId: request.id,
      mountPath: instance.prefix,
    });
  };
  instance.route({ method: METHODS, url: '/', handler: forward, exposeHeadRoute: false });
  instance.route({ method: METHODS, url: '/*', handler: forward, exposeHeadRoute: false });
  instance.addHook('onClose', (_instance, closed) => {
    handler.close().then(() => closed(), closed);
  });
  done();
};

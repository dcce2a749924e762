// Fastify adapter: a plugin registered under a prefix. It translates only:
// the proxied response (and the error contract) goes through the reply, as
// @fastify/reply-from does, so onSend hooks, @fastify/compress, reply.header()
// values and the request log see it; request bodies stay unparsed raw streams
// inside its own encapsulation context (the app's parsers elsewhere are
// untouched); its prefix is stripped from the path.

import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import type { ProxyOptions } from './options.js';
import type { IncomingMessage, OutgoingHttpHeader, Server } from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import { FrameworkResponse, type FrameworkReply } from './exchange/client-response.js';
import { createProxyHandler, type ProxyHandler } from './proxy.js';

/** The proxy's options; Fastify's own `prefix` (stripped from the path before forwarding) goes beside them. */
export type FastifyProxyOptions = ProxyOptions & {
  /** Also proxy WebSocket upgrades under the prefix. Default `false`. */
  websocket?: boolean;
};

/**
 * One 'upgrade' listener per server, shared by every plugin registered on it:
 * each upgrade goes to the plugin with the longest matching prefix, and one
 * that matches none is refused rather than left hanging.
 */
const upgradeRoutes = new WeakMap<Server, Map<string, ProxyHandler>>();

function underPrefix(url: string, prefix: string): boolean {
  return prefix === '' || url === prefix || url.startsWith(`${prefix}/`) || url.startsWith(`${prefix}?`);
}

function routeUpgrades(server: Server, prefix: string, handler: ProxyHandler): () => void {
  let routes = upgradeRoutes.get(server);
  if (routes === undefined) {
    const table = new Map<string, ProxyHandler>();
    routes = table;
    upgradeRoutes.set(server, table);
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const url = req.url ?? '/';
      let best: [string, ProxyHandler] | null = null;
      for (const entry of table) if (underPrefix(url, entry[0]) && (best === null || entry[0].length > best[0].length)) best = entry;
      if (best === null) {
        socket.on('error', () => socket.destroy());
        socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
        return;
      }
      void best[1].upgrade(req, socket, head, { mountPath: best[0] });
    });
  }
  routes.set(prefix, handler);
  return () => routes.delete(prefix);
}

// The methods Fastify 4 and 5 both route.
const METHODS = ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'];
// Options Fastify's register() reads itself and passes on to the plugin.
const REGISTER_OPTIONS = new Set(['prefix', 'logLevel', 'logSerializers', 'websocket']);

function withoutPrefix(url: string, prefix: string): string {
  if (prefix === '' || !url.startsWith(prefix)) return url;
  const rest = url.slice(prefix.length);
  return rest.startsWith('/') ? rest : `/${rest}`;
}

/** Fastify's reply as the core's FrameworkReply: its methods on the prototype, so a request allocates one object, not a closure per method. */
class FastifyBridge implements FrameworkReply {
  readonly raw: FastifyReply['raw'];
  readonly #reply: FastifyReply;

  constructor(reply: FastifyReply) {
    this.#reply = reply;
    this.raw = reply.raw;
  }

  getHeader(name: string): OutgoingHttpHeader | undefined {
    return this.#reply.getHeader(name);
  }

  setHeader(name: string, value: OutgoingHttpHeader): void {
    // reply.header() appends to a Set-Cookie already there; the core passes the joined list.
    this.#reply.removeHeader(name);
    this.#reply.header(name, value);
  }

  removeHeader(name: string): void {
    this.#reply.removeHeader(name);
    this.raw.removeHeader(name);
  }

  status(statusCode: number, statusMessage: string | undefined): void {
    this.#reply.code(statusCode);
    // Node keeps a reason phrase set here when Fastify writes the head; '' means the standard one.
    this.raw.statusMessage = statusMessage ?? '';
  }

  send(body: Readable | Buffer | null): void {
    if (body === null) void this.#reply.send();
    else void this.#reply.send(body);
  }
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
    if (options.websocket !== undefined && typeof options.websocket !== 'boolean') {
      throw new TypeError(`Expected \`websocket\` to be a boolean, got ${typeof options.websocket}.`);
    }
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
  // Not async: Fastify waits for reply.send(), which the proxy calls once it has a head.
  const forward = (request: FastifyRequest, reply: FastifyReply): void => {
    void handler.handle(request.raw, new FrameworkResponse(new FastifyBridge(reply)), {
      url: withoutPrefix(request.raw.url ?? '/', instance.prefix),
      requestId: request.id,
      mountPath: instance.prefix,
    });
  };
  instance.route({ method: METHODS, url: '/', handler: forward, exposeHeadRoute: false });
  instance.route({ method: METHODS, url: '/*', handler: forward, exposeHeadRoute: false });
  const stopUpgrades = options.websocket === true ? routeUpgrades(instance.server, instance.prefix, handler) : null;
  instance.addHook('onClose', (_instance, closed) => {
    stopUpgrades?.();
    handler.close().then(() => closed(), closed);
  });
  done();
};

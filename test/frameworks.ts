// Every supported framework major, each mounting the proxy at `/api` the way
// its users would, and listening on a loopback port. The contract suite runs
// against each of them.

import type { IncomingMessage, ServerResponse } from 'node:http';
import bodyParser from '@koa/bodyparser';
import express from 'express';
import express4 from 'express4';
import Fastify from 'fastify';
import Fastify4 from 'fastify4';
import Koa from 'koa';
import Koa2 from 'koa2';
import mount from 'koa-mount';
import type { FastifyPluginCallback } from 'fastify';
import { UpstreamRegistry, type ProxyOptions } from '../src/index.js';
import { fastifyProxy } from '../src/fastify.js';
import { koaProxy } from '../src/koa.js';
import { listen, onCleanup, proxy, testRegistry } from './support.js';

export interface Framework {
  readonly name: string;
  /**
   * Starts an app with the proxy at `/api` and returns its base URL. With
   * `parseBodies`, the app's own JSON body parser runs before the proxy
   * (Fastify's plugin keeps bodies raw in its own context whatever the app does).
   */
  readonly mount: (options: ProxyOptions, parseBodies?: boolean) => Promise<string>;
  /** Where the proxy's redirects are moved to: `/api`, or '' where the app strips the prefix by hand (node:http). */
  readonly mountPath: string;
}

function withRegistry(options: ProxyOptions): ProxyOptions & { registry: UpstreamRegistry } {
  return { registry: testRegistry(), ...options };
}

type ExpressFactory = typeof express;

function expressMount(factory: ExpressFactory): Framework['mount'] {
  return async (options, parseBodies = false) => {
    const app = factory();
    if (parseBodies) app.use(factory.json());
    app.use('/api', proxy(options));
    return (await listen(app)).url;
  };
}

interface FastifyLike {
  register(plugin: FastifyPluginCallback<ProxyOptions>, options: ProxyOptions & { prefix: string }): unknown;
  post(path: string, handler: () => string): unknown;
  listen(options: { port: number; host: string }): Promise<string>;
  close(): Promise<unknown>;
}

function fastifyMount(factory: () => FastifyLike): Framework['mount'] {
  return async (options) => {
    const app = factory();
    // A JSON route elsewhere in the app: its parser must not touch the proxy's bodies.
    app.post('/elsewhere', () => 'parsed here');
    app.register(fastifyProxy, { prefix: '/api', ...withRegistry(options) });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    onCleanup(() => app.close());
    return url;
  };
}

interface KoaLike {
  use(middleware: unknown): unknown;
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
}

function koaMount(factory: new () => KoaLike): Framework['mount'] {
  return async (options, parseBodies = false) => {
    const app = new factory();
    if (parseBodies) app.use(bodyParser());
    const middleware = koaProxy(withRegistry(options));
    onCleanup(() => middleware.close());
    app.use(mount('/api', middleware));
    return (await listen(app.callback())).url;
  };
}

export const frameworks: Framework[] = [
  { name: 'Express 5', mountPath: '/api', mount: expressMount(express) },
  { name: 'Express 4', mountPath: '/api', mount: expressMount(express4) },
  { name: 'Fastify 5', mountPath: '/api', mount: fastifyMount(() => Fastify()) },
  { name: 'Fastify 4', mountPath: '/api', mount: fastifyMount(() => Fastify4() as unknown as FastifyLike) },
  { name: 'Koa 3', mountPath: '/api', mount: koaMount(Koa) },
  { name: 'Koa 2', mountPath: '/api', mount: koaMount(Koa2) },
  {
    name: 'node:http',
    mountPath: '',
    mount: async (options) => {
      const handler = proxy(options);
      // What an app does by hand to mount a listener under a prefix, keeping
      // the client's target in `originalUrl` as Connect and Express do.
      const gateway = await listen((req: IncomingMessage & { originalUrl?: string | undefined }, res: ServerResponse) => {
        req.originalUrl = req.url;
        req.url = (req.url ?? '/').replace(/^\/api(?=\/|\?|$)/, '') || '/';
        handler(req, res);
      });
      return gateway.url;
    },
  },
];

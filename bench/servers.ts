// The processes of the benchmark, one per contender, each started by the
// runner as `tsx bench/servers.ts <kind> <upstream-url>`. Each listens on a
// free loopback port and tells the runner through IPC. resilient-proxy is
// imported by name, which resolves to the build in dist/ (see run.ts).

import { createServer, type IncomingHttpHeaders, type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import fastifyHttpProxy from '@fastify/http-proxy';
import { createProxyMiddleware } from 'http-proxy-middleware';
import { Agent as HttpAgent } from 'node:http';
import { Dispatcher, Pool } from 'undici';
import { subscribe } from 'node:diagnostics_channel';
import { DIAGNOSTICS_CHANNELS } from 'resilient-proxy';
import { fastifyProxy } from 'resilient-proxy/fastify';
import { writeBytes } from './write-bytes.js';

export const KINDS = [
  'upstream',
  'bare-undici',
  'bare-undici-express',
  'rp-node',
  'rp-express',
  'hpm-express',
  'rp-fastify',
  'fastify-http-proxy',
  'rp-open-circuit',
  'rp-refused',
  // For bench/cpu.ts: default options, and one feature on at a time.
  'rp-express-default',
  'rp-group',
  'rp-stale',
  'rp-channels',
  'rp-hooks',
  // For bench/cpu.ts's pairs that explain a group's cost (run only when named).
  'upstream-three-ports',
  'rp-three-pools',
  'rp-one-pool',
  // For bench/cpu.ts's `floor` pairs: undici's dispatch() and a handler, nothing else.
  'floor-dispatch',
] as const;
export type Kind = (typeof KINDS)[number];

const KiB = 1024;
const MiB = 1024 * KiB;
const bodies = new Map([
  ['/1k', Buffer.alloc(KiB, 'k')],
  ['/1m', Buffer.alloc(MiB, 'm')],
]);

/** The upstream: fixed 1 KiB and 1 MiB bodies, a streamed download of any size, an upload sink, a 503. */
const upstream: RequestListener = (req, res) => {
  const url = req.url ?? '/';
  const fixed = bodies.get(url);
  if (fixed !== undefined) {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': fixed.length });
    res.end(fixed);
    return;
  }
  const download = /^\/download\/(\d+)$/.exec(url);
  if (download) {
    const total = Number(download[1]);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
    writeBytes(res, total);
    return;
  }
  if (url === '/sink') {
    let received = 0;
    req.on('data', (data: Buffer) => (received += data.length));
    req.once('end', () => res.end(String(received)));
    return;
  }
  if (url === '/503') {
    res.writeHead(503, { 'content-length': 0 }).end();
    return;
  }
  res.writeHead(404).end();
};

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

function strip(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const kept: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) kept[name] = value;
  return kept;
}

/** (b) A minimal proxy on undici written the usual way: Pool.stream with an AbortSignal, hop-by-hop stripping, nothing else. */
function bareUndici(target: string): RequestListener {
  const pool = new Pool(target);
  return (req: IncomingMessage, res: ServerResponse) => {
    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    pool
      .stream(
        { path: req.url ?? '/', method: req.method ?? 'GET', headers: strip(req.headers), body: hasBody ? req : null, signal: abort.signal },
        ({ statusCode, headers }) => {
          res.writeHead(statusCode, strip(headers));
          return res;
        },
      )
      .catch(() => {
        if (res.headersSent) res.destroy();
        else res.writeHead(502).end();
      });
  };
}

/** The floor of the design (bench/cpu.ts's `floor` pair): undici's dispatch() with a handler that writes to the response, hop-by-hop stripping, and nothing else — no timers, ids, forwarding headers, breaker or retries. */
class FloorHandler implements Dispatcher.DispatchHandler {
  constructor(private readonly res: ServerResponse) {}
  onRequestStart(): void {
    // undici takes a handler for its new API by this method.
  }
  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    this.res.writeHead(statusCode, strip(headers));
  }
  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.res.write(chunk);
  }
  onResponseEnd(): void {
    this.res.end();
  }
  onResponseError(): void {
    if (this.res.headersSent) this.res.destroy();
    else this.res.writeHead(502).end();
  }
}

function floorDispatch(target: string): RequestListener {
  const pool = new Pool(target);
  return (req, res) => {
    const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    pool.dispatch({ path: req.url ?? '/', method: req.method ?? 'GET', headers: strip(req.headers), body: hasBody ? req : null }, new FloorHandler(res));
  };
}

async function listen(listener: RequestListener): Promise<number> {
  const server = createServer(listener);
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** A dispatcher over `pools` taken in turn: a single target's requests spread over several pools, as a group's are over its hosts'. */
class Rotation extends Dispatcher {
  #next = 0;
  constructor(private readonly pools: readonly Pool[]) {
    super();
  }
  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const pool = this.pools[this.#next % this.pools.length] as Pool;
    this.#next += 1;
    return pool.dispatch(options, handler);
  }
  override async close(): Promise<void> {
    await Promise.all(this.pools.map((pool) => pool.close()));
  }
  override async destroy(): Promise<void> {
    await Promise.all(this.pools.map((pool) => pool.destroy()));
  }
}

/** Everything on: timeouts (including a deadline), retries with a budget, the breaker with a capacity. */
const fullyArmed = {
  timeout: { connect: 2_000, response: 10_000, idle: 10_000, total: 30_000 },
  retry: { retries: 2 },
  breaker: { capacity: 10_000 },
};

// RP_LIBRARY points at another build (bench/cpu.ts measures an older commit's dist/ beside this one).
const { createProxy, UpstreamRegistry } = (await import(process.env.RP_LIBRARY ?? 'resilient-proxy')) as typeof import('resilient-proxy');

async function start(kind: Kind, target: string): Promise<number> {
  switch (kind) {
    case 'upstream':
      return listen(upstream);
    case 'bare-undici':
      return listen(bareUndici(target));
    case 'floor-dispatch':
      return listen(floorDispatch(target));
    case 'bare-undici-express': {
      // Not a contender: (b) inside Express, to show what Express itself costs.
      const app = express();
      app.use('/', bareUndici(target));
      return listen(app);
    }
    case 'rp-node':
      return listen(createProxy({ target }));
    case 'rp-express': {
      const app = express();
      app.use('/', createProxy({ target, name: 'bench', ...fullyArmed }));
      return listen(app);
    }
    case 'hpm-express': {
      const app = express();
      // A keep-alive agent: http-proxy's default opens a new upstream connection per request.
      app.use('/', createProxyMiddleware({ target, agent: new HttpAgent({ keepAlive: true }) }));
      return listen(app);
    }
    case 'rp-fastify': {
      const app = Fastify();
      await app.register(fastifyProxy, { target });
      await app.listen({ port: 0, host: '127.0.0.1' });
      return (app.server.address() as AddressInfo).port;
    }
    case 'fastify-http-proxy': {
      const app = Fastify();
      await app.register(fastifyHttpProxy, { upstream: target });
      await app.listen({ port: 0, host: '127.0.0.1' });
      return (app.server.address() as AddressInfo).port;
    }
    case 'rp-open-circuit': {
      // Every request fails until the circuit opens; then it is refused.
      const registry = new UpstreamRegistry();
      return listen(createProxy({ target, retry: false, breaker: { volumeThreshold: 1, resetTimeout: 3_600_000 }, registry }));
    }
    case 'rp-refused':
      return listen(createProxy({ target, retry: false, breaker: false }));
    case 'rp-express-default': {
      const app = express();
      app.use('/', createProxy({ target }));
      return listen(app);
    }
    case 'upstream-three-ports': {
      // One process, three origins: the ports after the first are told through `ports`.
      const ports = [await listen(upstream), await listen(upstream), await listen(upstream)];
      extraPorts = ports.slice(1);
      return ports[0] ?? 0;
    }
    case 'rp-three-pools':
      return listen(createProxy({ target, dispatcher: new Rotation([new Pool(target), new Pool(target), new Pool(target)]) }));
    case 'rp-one-pool':
      return listen(createProxy({ target, dispatcher: new Rotation([new Pool(target)]) }));
    case 'rp-group':
      // `target` is a comma-separated list of hosts.
      return listen(createProxy({ target: target.split(',') }));
    case 'rp-stale':
      return listen(createProxy({ target, staleIfError: true }));
    case 'rp-channels':
      for (const name of Object.values(DIAGNOSTICS_CHANNELS)) subscribe(name, () => undefined);
      return listen(createProxy({ target }));
    case 'rp-hooks':
      return listen(createProxy({ target, headers: { request: (headers) => ({ ...headers }) }, hooks: { onFailure: () => undefined, onRetry: () => undefined } }));
  }
}

const [name = '', target = ''] = process.argv.slice(2);
const kind = KINDS.find((known) => known === name);
if (kind === undefined) throw new TypeError(`unknown server kind ${name}`);
let extraPorts: number[] = [];
const port = await start(kind, target);
process.send?.({ port, ports: [port, ...extraPorts], library: process.env.RP_LIBRARY ?? import.meta.resolve('resilient-proxy') });
// bench/cpu.ts asks for the process's CPU time (user + system, µs) and its event loop's busy and idle time before and after each window.
process.on('message', (message) => {
  if (message === 'cpu') process.send?.({ cpu: process.cpuUsage(), loop: performance.eventLoopUtilization() });
});
// A clean exit on SIGINT, so that `--cpu-prof` can write its profile.
process.once('SIGINT', () => process.exit(0));

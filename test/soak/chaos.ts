// The chaos soak: many requests at high concurrency through a gateway to an
// upstream that misbehaves at random (seeded, so a run can be replayed), with
// clients that abort at random. Every request is checked against the promise
// — a complete success, the exact 502 contract, or (after headers) a cut
// connection; never a hang, never a POST seen twice — and afterwards sockets,
// timers, breaker in-flight counts and heap must be back where they started.

import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, request, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import express from 'express';
import Fastify from 'fastify';
import Koa from 'koa';
import mount from 'koa-mount';
import { Agent, buildConnector } from 'undici';
import { createProxyHandler } from '../../src/proxy.js';
import { FAILURE_CODES, UpstreamRegistry, type ProxyOptions } from '../../src/index.js';
import { fastifyProxy } from '../../src/fastify.js';
import { koaProxy } from '../../src/koa.js';
import { faults, startFaultUpstream, type Behaviour } from '../../src/testing/index.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

export type Framework = 'express' | 'fastify' | 'koa';

export interface SoakOptions {
  readonly framework: Framework;
  readonly requests: number;
  readonly concurrency: number;
  readonly seed: number;
}

export interface SoakReport {
  readonly framework: Framework;
  readonly requests: number;
  readonly seconds: number;
  /** What the clients saw. */
  readonly outcomes: Record<string, number>;
  /** What the upstream and the connector did. */
  readonly faults: Record<string, number>;
  readonly violations: number;
  /** The first violations, described. */
  readonly examples: string[];
  readonly handles: { before: Record<string, number>; after: Record<string, number> };
  readonly heapMiB: { before: number; after: number };
  readonly inFlightAfter: number;
}

/** mulberry32: small, fast, seedable. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function seedOf(text: string): number {
  return createHash('sha256').update(text).digest().readUInt32LE(0);
}

function count(table: Record<string, number>, key: string): void {
  table[key] = (table[key] ?? 0) + 1;
}

/** The upstream's choice for one attempt, by weight. */
const BEHAVIOURS: [string, number][] = [
  ['success', 55],
  ['503', 8],
  ['hang', 3],
  ['resetBeforeHeaders', 5],
  ['closeBeforeHeaders', 4],
  ['malformedStatusLine', 3],
  ['headersThenStall', 3],
  ['closeMidBody', 5],
  ['resetMidBody', 5],
  ['badChunk', 3],
];
const TOTAL_WEIGHT = BEHAVIOURS.reduce((sum, [, weight]) => sum + weight, 0);

function pick(rng: () => number): string {
  let roll = rng() * TOTAL_WEIGHT;
  for (const [name, weight] of BEHAVIOURS) {
    roll -= weight;
    if (roll < 0) return name;
  }
  return 'success';
}

function body(rng: () => number): Buffer {
  const size = Math.floor(rng() * 64 * 1024);
  const bytes = Buffer.alloc(size);
  for (let i = 0; i < size; i += 1) bytes[i] = (i * 131 + size) & 0xff;
  return bytes;
}

/** Sockets and timers are back to (or under) their count before the load. */
export function settledBack(before: Record<string, number>, after: Record<string, number>): boolean {
  return (after.TCPSocketWrap ?? 0) <= (before.TCPSocketWrap ?? 0) && (after.Timeout ?? 0) <= (before.Timeout ?? 0);
}

function resources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const type of process.getActiveResourcesInfo()) count(counts, type);
  return counts;
}

async function listen(listener: RequestListener): Promise<Server> {
  const server = createServer(listener);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

async function gateway(framework: Framework, options: ProxyOptions): Promise<{ url: string; close: () => Promise<void>; idle: () => void }> {
  if (framework === 'fastify') {
    const app = Fastify();
    await app.register(fastifyProxy, { prefix: '/api', ...options });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    return { url, close: () => app.close(), idle: () => app.server.closeIdleConnections() };
  }
  let server: Server;
  let closeProxy: () => Promise<void>;
  if (framework === 'koa') {
    const app = new Koa();
    // Koa logs every request its client aborted; the soak counts outcomes itself.
    app.silent = true;
    const proxy = koaProxy(options);
    app.use(mount('/api', proxy));
    const handle = app.callback();
    server = await listen((req, res) => void handle(req, res));
    closeProxy = () => proxy.close();
  } else {
    const app = express();
    const proxy = createProxyHandler(options);
    app.use('/api', (req: IncomingMessage, res: ServerResponse) => proxy.handle(req, res));
    server = await listen(app);
    closeProxy = () => proxy.close();
  }
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    idle: () => server.closeIdleConnections(),
    close: async () => {
      server.closeAllConnections();
      server.close();
      await closeProxy();
    },
  };
}

interface Expected {
  readonly id: string;
  readonly method: string;
  readonly abort: 'none' | 'mid-request' | 'mid-response';
}

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const outcomes: Record<string, number> = {};
  const injected: Record<string, number> = {};
  const examples: string[] = [];
  let violations = 0;
  const violate = (what: string): void => {
    violations += 1;
    if (examples.length < 20) examples.push(what);
  };
  const unhandled = (error: unknown): void => violate(`unhandled: ${String(error)}`);
  process.on('unhandledRejection', unhandled);
  process.on('uncaughtException', unhandled);

  // The upstream: each attempt draws its behaviour from (request id, attempt).
  const seenPosts = new Map<string, number>();
  // Not recording requests: the heap must show what the proxy keeps, not the test.
  const upstream = await startFaultUpstream({ recordRequests: false });
  const chaos: Behaviour = (context) => {
    const id = String(context.req.headers['x-request-id']);
    const attempt = String(context.req.headers['x-attempt-count'] ?? '1');
    if (context.req.method === 'POST') {
      const seen = (seenPosts.get(id) ?? 0) + 1;
      seenPosts.set(id, seen);
      if (seen > 1) violate(`POST ${id} reached the upstream ${seen} times`);
    }
    const rng = random(seedOf(`${options.seed}:${id}:${attempt}`));
    const behaviour = pick(rng);
    count(injected, behaviour);
    if (behaviour === 'success') {
      const data = body(rng);
      faults.respond(200, data, { 'x-sha256': createHash('sha256').update(data).digest('hex') })(context);
    } else if (behaviour === '503') faults.status(503, { retryAfter: 0 })(context);
    else faults[behaviour as 'hang'](...([] as []))(context);
  };
  upstream.setFallback(chaos);

  // Connections are refused at random, as by a restarting upstream.
  const connectRng = random(options.seed);
  const connector = buildConnector({});
  const dispatcher = new Agent({
    connect: (connectOptions, callback) => {
      if (connectRng() < 0.05) {
        count(injected, 'refuse');
        setImmediate(() => callback(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED', syscall: 'connect' }), null));
        return;
      }
      connector(connectOptions, callback);
    },
  });

  const registry = new UpstreamRegistry();
  const proxyOptions: ProxyOptions = {
    target: upstream.url,
    name: 'chaos',
    dispatcher,
    registry,
    timeout: { connect: 500, response: 300, idle: 300, total: 3_000 },
    retry: { minDelay: 5, maxDelay: 20 },
  };
  const front = await gateway(options.framework, proxyOptions);

  gc();
  const handlesBefore = resources();
  const heapBefore = process.memoryUsage().heapUsed / 1024 / 1024;
  const started = performance.now();

  const rng = random(options.seed ^ 0x5eed);
  let next = 0;
  const one = (expected: Expected, payload: Buffer | null): Promise<void> =>
    new Promise((resolve) => {
      let settled = false;
      const settle = (outcome: string, problem?: string): void => {
        if (settled) return;
        settled = true;
        clearTimeout(watchdog);
        if (problem !== undefined) violate(`${expected.method} ${expected.id}: ${problem}`);
        count(outcomes, outcome);
        resolve();
      };
      const watchdog = setTimeout(() => {
        settle('hang', 'no ending within 10 s');
        client.destroy();
      }, 10_000);
      const headers: Record<string, string> = { 'x-request-id': expected.id };
      if (payload !== null) headers['content-length'] = String(payload.length);
      const client = request(`${front.url}/api/chaos`, { method: expected.method, headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          if (expected.abort === 'mid-response') {
            client.destroy();
            settle('client aborted mid-response');
          }
        });
        const judge = (complete: boolean): [string, string?] => {
          const data = Buffer.concat(chunks);
          if (res.statusCode === 200) {
            if (!complete) return ['cut off after headers'];
            const sha = createHash('sha256').update(data).digest('hex');
            return sha === res.headers['x-sha256'] ? ['success'] : ['bad success', 'a clean end with a body that does not match'];
          }
          if (!complete) return ['bad error', `status ${res.statusCode ?? 0} cut off`];
          let problem: { code?: unknown; status?: unknown; requestId?: unknown } = {};
          try {
            problem = JSON.parse(data.toString()) as typeof problem;
          } catch {
            return ['bad error', `status ${res.statusCode ?? 0} without a problem body`];
          }
          const contract =
            res.headers['content-type'] === 'application/problem+json' &&
            res.headers['cache-control'] === 'no-store' &&
            typeof res.headers['proxy-status'] === 'string' &&
            res.headers['proxy-status'].startsWith('resilient-proxy') &&
            FAILURE_CODES.includes(problem.code as (typeof FAILURE_CODES)[number]) &&
            problem.status === res.statusCode &&
            problem.requestId === expected.id;
          if (!contract) return ['bad error', `status ${res.statusCode ?? 0} off the contract: ${data.toString().slice(0, 200)}`];
          return [`502 ${String(problem.code)}`];
        };
        const ended = (complete: boolean): void => {
          const [outcome, problem] = judge(complete);
          settle(outcome, problem);
        };
        res.once('end', () => ended(res.complete));
        res.once('aborted', () => ended(false));
        res.once('error', () => ended(false));
      });
      client.on('error', (error: NodeJS.ErrnoException) => {
        if (expected.abort !== 'none') settle(`client aborted ${expected.abort}`);
        else settle('dropped before headers', `connection error before any response: ${error.code ?? error.message}`);
      });
      if (payload === null) client.end();
      else if (expected.abort === 'mid-request') {
        client.write(payload.subarray(0, payload.length >> 1), () => {
          client.destroy();
          settle('client aborted mid-request');
        });
      } else client.end(payload);
    });

  await Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      while (next < options.requests) {
        const n = next;
        next += 1;
        const roll = rng();
        const method = roll < 0.6 ? 'GET' : roll < 0.85 ? 'POST' : 'PUT';
        const abortRoll = rng();
        const abort = abortRoll < 0.04 ? 'mid-response' : abortRoll < 0.08 && method !== 'GET' ? 'mid-request' : 'none';
        const payload = method === 'GET' ? null : Buffer.alloc(1 + Math.floor(rng() * 8192), n & 0xff);
        await one({ id: `soak-${options.seed}-${n}`, method, abort }, payload);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;

  // Let everything the load left behind finish, then compare with the start.
  for (let waited = 0; waited < 200 && (registry.get('chaos')?.inFlight ?? 0) > 0; waited += 1) await new Promise((r) => setTimeout(r, 10));
  const inFlightAfter = registry.get('chaos')?.inFlight ?? 0;
  front.idle();
  await upstream.close();
  seenPosts.clear();
  // Closing sockets takes a few turns of the event loop.
  for (let waited = 0; waited < 100 && !settledBack(handlesBefore, resources()); waited += 1) await new Promise((r) => setTimeout(r, 20));
  gc();
  const handlesAfter = resources();
  const heapAfter = process.memoryUsage().heapUsed / 1024 / 1024;

  await front.close();
  await dispatcher.destroy();
  registry.close();
  process.off('unhandledRejection', unhandled);
  process.off('uncaughtException', unhandled);

  return {
    framework: options.framework,
    requests: options.requests,
    seconds,
    outcomes,
    faults: injected,
    violations,
    examples,
    handles: { before: handlesBefore, after: handlesAfter },
    heapMiB: { before: heapBefore, after: heapAfter },
    inFlightAfter,
  };
}

// `npm run demo`: starts a misbehaving upstream and an Express gateway on
// loopback, sends one request per failure class through the gateway, and
// prints what the client got. Every row is answered by the same contract.
//
// Run: npm install && npm run demo

import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Dispatcher } from 'undici';
import { createProxy, UpstreamRegistry, type BreakerOptions, type FailureEvent, type ResilientProxy } from 'resilient-proxy';
import {
  connectHangDispatcher,
  dnsFailureDispatcher,
  faults,
  refusedUrl,
  startFaultUpstream,
  unreachableDispatcher,
  type Behaviour,
  type FaultUpstream,
} from 'resilient-proxy/testing';

interface Scenario {
  readonly path: string;
  readonly what: string;
  readonly target: () => Promise<string>;
  readonly dispatcher?: () => Dispatcher;
  readonly method?: string;
  readonly breaker?: Partial<BreakerOptions>;
  /** A request sent first, to trip the breaker or fill the upstream's capacity. */
  readonly prime?: 'await' | 'in-flight';
}

const timeout = { connect: 300, response: 300, idle: 300 };
const tls = {
  key: readFileSync(new URL('../test/fixtures/self-signed.key', import.meta.url)),
  cert: readFileSync(new URL('../test/fixtures/self-signed.crt', import.meta.url)),
};
const upstreams: FaultUpstream[] = [];
const dispatchers: Dispatcher[] = [];
const proxies: ResilientProxy[] = [];

async function misbehaving(behaviour: Behaviour, options: { tls?: typeof tls } = {}): Promise<string> {
  const upstream = await startFaultUpstream({ fallback: behaviour, ...options });
  upstreams.push(upstream);
  return upstream.url;
}

function owned(dispatcher: Dispatcher): Dispatcher {
  dispatchers.push(dispatcher);
  return dispatcher;
}

async function flaky(): Promise<string> {
  const upstream = await startFaultUpstream({ fallback: faults.respond(200, 'hello') });
  upstream.enqueue(faults.resetBeforeHeaders(), faults.status(503));
  upstreams.push(upstream);
  return upstream.url;
}

const nowhere = (): Promise<string> => Promise.resolve('http://orders.internal:8080');

const scenarios: Scenario[] = [
  { path: '/ok', what: 'healthy upstream', target: () => misbehaving(faults.respond(200, 'hello')) },
  { path: '/flaky', what: 'fails twice, then answers', target: () => flaky() },
  { path: '/dns', what: 'name does not resolve', target: nowhere, dispatcher: () => dnsFailureDispatcher('ENOTFOUND') },
  { path: '/unreachable', what: 'no route to host', target: nowhere, dispatcher: () => unreachableDispatcher('EHOSTUNREACH') },
  { path: '/refused', what: 'port closed', target: () => refusedUrl() },
  { path: '/connect-timeout', what: 'connect never completes', target: nowhere, dispatcher: () => connectHangDispatcher() },
  { path: '/tls', what: 'self-signed certificate', target: () => misbehaving(faults.respond(), { tls }) },
  { path: '/reset', what: 'reset before headers', target: () => misbehaving(faults.resetBeforeHeaders()) },
  { path: '/hang', what: 'never answers', target: () => misbehaving(faults.hang()) },
  { path: '/malformed', what: 'malformed status line', target: () => misbehaving(faults.malformedStatusLine()) },
  { path: '/unavailable', what: 'answers 503 Retry-After: 5', target: () => misbehaving(faults.status(503, { retryAfter: 5 })) },
  { path: '/mid-body', what: 'closes mid-body', target: () => misbehaving(faults.closeMidBody(4096, 100)) },
  { path: '/stall', what: 'stalls mid-body', target: () => misbehaving(faults.headersThenStall(4096, 100)) },
  { path: '/consumed', what: 'body eaten by middleware', target: () => misbehaving(faults.respond()), method: 'POST' },
  {
    path: '/circuit',
    what: 'keeps failing: circuit opens',
    target: () => misbehaving(faults.status(503)),
    breaker: { volumeThreshold: 3, resetTimeout: 30_000 },
    prime: 'await',
  },
  {
    path: '/overloaded',
    what: 'slow, at capacity (1)',
    target: () => misbehaving(faults.hang()),
    breaker: { capacity: 1 },
    prime: 'in-flight',
  },
];

interface Row {
  what: string;
  status: string;
  attempts: string;
  code: string;
  proxyStatus: string;
  ending: string;
  ms: string;
}

function call(base: string, scenario: Scenario): Promise<Omit<Row, 'what' | 'code' | 'ms' | 'attempts'> & { code: string; attempts: number | null }> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${scenario.path}/items`, { method: scenario.method ?? 'GET', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      const done = (ending: string) => {
        let code = '-';
        let attempts: number | null = null;
        if (res.headers['content-type'] === 'application/problem+json') ({ code, attempts } = JSON.parse(body) as { code: string; attempts: number });
        resolve({ status: String(res.statusCode), code, attempts, proxyStatus: String(res.headers['proxy-status'] ?? '-'), ending });
      };
      res.once('end', () => done(res.complete ? 'complete' : 'cut off'));
      res.once('aborted', () => done('cut off'));
      res.once('error', () => undefined);
    });
    req.once('error', reject);
    if (scenario.method === 'POST') {
      req.setHeader('content-type', 'application/octet-stream');
      req.end('payload');
    } else req.end();
  });
}

async function main(): Promise<void> {
  const app = express();
  const registry = new UpstreamRegistry();
  const failures = new Map<string, FailureEvent>();
  const retries = new Map<string, number>();
  // A middleware that reads request bodies and keeps nothing: the proxy must
  // fail clearly instead of waiting forever for a body that is gone.
  app.use('/consumed', (req, _res, next) => {
    req.resume();
    req.once('end', () => next());
  });
  for (const scenario of scenarios) {
    const proxy = createProxy({
      target: await scenario.target(),
      // One upstream name per scenario: the breaker is shared by name.
      name: scenario.path.slice(1),
      timeout,
      registry,
      ...(scenario.breaker && { breaker: scenario.breaker }),
      ...(scenario.dispatcher && { dispatcher: owned(scenario.dispatcher()) }),
      hooks: {
        onFailure: (event) => failures.set(scenario.path, event),
        onRetry: () => retries.set(scenario.path, (retries.get(scenario.path) ?? 0) + 1),
      },
    });
    proxies.push(proxy);
    app.use(scenario.path, proxy);
  }
  const server: Server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const rows: Row[] = [];
  const primed: Promise<unknown>[] = [];
  for (const scenario of scenarios) {
    if (scenario.prime === 'await') await call(base, scenario);
    if (scenario.prime === 'in-flight') {
      const pending = call(base, scenario);
      primed.push(pending);
      await new Promise((resolve) => setImmediate(resolve));
    }
    retries.delete(scenario.path);
    failures.delete(scenario.path);
    const started = performance.now();
    const result = await call(base, scenario);
    const ms = (performance.now() - started).toFixed(0);
    // After headers went out the code only reaches the hook; the client sees a cut.
    const hooked = failures.get(scenario.path);
    const code = result.code !== '-' ? result.code : hooked ? `${hooked.code} (hook)` : '-';
    // The error body says how many attempts were made; for a response that
    // went through, count the retries the hook saw.
    const attempts = String(result.attempts ?? (retries.get(scenario.path) ?? 0) + 1);
    rows.push({ what: scenario.what, ...result, attempts, code, ms });
  }

  const header: Row = { what: 'upstream fault', status: 'status', attempts: 'tries', code: 'code', proxyStatus: 'Proxy-Status', ending: 'body', ms: 'ms' };
  const keys = Object.keys(header) as (keyof Row)[];
  const width = Object.fromEntries(keys.map((k) => [k, Math.max(...[header, ...rows].map((r) => r[k].length))])) as Record<keyof Row, number>;
  const line = (row: Row) => keys.map((k) => (k === 'ms' ? row[k].padStart(width[k]) : row[k].padEnd(width[k]))).join('  ');
  console.log(`\nresilient-proxy demo: one request per failure class through ${base}\n`);
  console.log(line(header));
  console.log(keys.map((k) => '-'.repeat(width[k])).join('  '));
  for (const row of rows) console.log(line(row));
  console.log('\nTimeouts in this demo: connect 300 ms, response 300 ms, idle 300 ms.');
  console.log('GETs are retried up to twice when that is safe; TLS failures and broken bodies never are.');

  await Promise.all(primed);
  server.closeAllConnections();
  server.close();
  registry.close();
  await Promise.all([...proxies.map((p) => p.close()), ...upstreams.map((u) => u.close()), ...dispatchers.map((d) => d.destroy())]);
}

await main();

// `npx tsx bench/fleet.ts`: a fleet of N independent proxy instances (each
// with its own registry, as separate processes would have), in four parts run
// side by side in one go:
//
// 1. Retry throttling: one group of three hosts during an outage of one host
//    and of every host; the upstream load as a multiple of the client load,
//    what the retry budget, the breaker and outlier detection add up to when
//    their state is per instance (DESIGN.md §15). The client load is fixed and
//    shared across the fleet, so a larger N means fewer requests per instance.
// 2. DNS churn: every instance follows `target: { dns }` on a real dnsmasq
//    while replicas are added and removed (records changed and read again on
//    SIGHUP; the DNS server stopped and restarted with new records) under a
//    steady client load. A removed replica is closed only once every instance
//    has dropped it and it has finished what it carries, as a drained pod is.
//    Reported: requests sent, errors, and how long each change took to reach
//    every instance.
// 3. An outage served stale: one instance keeps responses, every replica goes
//    down, and the whole fleet (the instances that never saw a response
//    included) is asked for them; the share served stale per instance, with
//    the Redis store (`resilient-proxy/redis`, a real redis-server) and with
//    the default memory store.
// 4. The Redis store's cost per request against the memory store's: two
//    gateway processes against one upstream process, loaded by autocannon at
//    the same time, on a keep (every response stored) and on a hit (the
//    upstream down, every response served stale): req/s and the gateway's
//    CPU time per request.
//
//   npx tsx bench/fleet.ts            N = 1, 10, 50; writes
//                                     bench/results/fleet.json, which
//                                     `npm run bench:docs` renders into
//                                     BENCHMARKS.md and docs/many-instances.md
//   npx tsx bench/fleet.ts --smoke    a few seconds in all, to prove it works (writes nothing)

import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { Agent, createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import { createProxy, UpstreamRegistry, type ProxyOptions, type ResilientProxy } from 'resilient-proxy';
import { RedisStaleStore } from 'resilient-proxy/redis';
import { startDnsmasq, startRedis, type Dnsmasq, type RedisServer } from './engines.js';
import { median, startServer } from './forked.js';
import { fleetBlock } from './sections/fleet.js';

const [, , role, mode, upstreamUrl, redisPort] = process.argv;
const smoke = process.argv.includes('--smoke');
const SECONDS = smoke ? 0.5 : 10;
/** Client requests per second, across the whole fleet. */
const RATE = 200;
const FLEETS = smoke ? [10] : [1, 10, 50];

interface Replica {
  readonly server: Server;
  readonly url: string;
  requests: number;
  failing: boolean;
}

async function replica(): Promise<Replica> {
  const server = createServer();
  const state: Replica = { server, url: '', requests: 0, failing: false };
  server.on('request', (req, res) => {
    state.requests += 1;
    req.resume();
    const status = state.failing ? 503 : 200;
    res.writeHead(status, { 'content-type': 'text/plain', 'content-length': 2 });
    res.end(status === 200 ? 'ok' : 'no');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return Object.assign(state, { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
}

function get(agent: Agent, port: number): Promise<number> {
  return new Promise((resolve) => {
    request({ host: '127.0.0.1', port, path: '/x', agent }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
    })
      .once('error', () => resolve(0))
      .end();
  });
}

interface Run {
  readonly fleet: number;
  readonly outage: 'one host' | 'every host';
  readonly config: string;
  readonly clientRequests: number;
  readonly upstreamRequests: number;
  readonly ratio: number;
  readonly clientErrors: number;
}

async function run(fleet: number, outage: Run['outage'], config: string, options: Pick<ProxyOptions, 'breaker' | 'retry'>): Promise<Run> {
  const replicas = await Promise.all([replica(), replica(), replica()]);
  for (const [index, host] of replicas.entries()) host.failing = outage === 'every host' || index === 0;
  const gateways = await Promise.all(
    Array.from({ length: fleet }, async () => {
      const registry = new UpstreamRegistry();
      const proxy = createProxy({ target: replicas.map((r) => r.url), name: 'orders', registry, ...options });
      const server = createServer(proxy).listen(0, '127.0.0.1');
      await once(server, 'listening');
      return { registry, proxy, server, port: (server.address() as AddressInfo).port, agent: new Agent({ keepAlive: true }) };
    }),
  );
  const pending: Promise<number>[] = [];
  const total = RATE * SECONDS;
  let sent = 0;
  // A fixed rate, spread round-robin over the fleet: every 10 ms, RATE/100 requests.
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      for (let i = 0; i < RATE / 100 && sent < total; i += 1) {
        const gateway = gateways[sent % fleet];
        if (gateway !== undefined) pending.push(get(gateway.agent, gateway.port));
        sent += 1;
      }
      if (sent >= total) {
        clearInterval(tick);
        resolve();
      }
    }, 10);
  });
  const statuses = await Promise.all(pending);
  const upstreamRequests = replicas.reduce((sum, r) => sum + r.requests, 0);
  for (const gateway of gateways) {
    gateway.agent.destroy();
    gateway.server.closeAllConnections();
    gateway.server.close();
    await gateway.proxy.close();
    gateway.registry.close();
  }
  for (const host of replicas) {
    host.server.closeAllConnections();
    host.server.close();
  }
  return {
    fleet,
    outage,
    config,
    clientRequests: total,
    upstreamRequests,
    ratio: upstreamRequests / total,
    clientErrors: statuses.filter((status) => status !== 200).length,
  };
}

// ---------------------------------------------------------------------------
// 2. DNS churn.

/** How long each replica takes to answer, in ms: requests are in flight when a replica leaves. */
const CHURN_DELAY = 50;
/** Steady load between two changes, in ms. */
const CHURN_HOLD = smoke ? 300 : 2000;
/** The records' TTL, in seconds; the instances use the default refresh bounds (1 s to 30 s) in a full run. */
const CHURN_TTL = smoke ? 0 : 1;
const NAME = 'orders.test';

interface ChurnReplica {
  readonly address: string;
  readonly server: Server;
  inFlight: number;
  served: number;
}

async function churnReplica(address: string, port: number): Promise<ChurnReplica> {
  const server = createServer();
  const state: ChurnReplica = { address, server, inFlight: 0, served: 0 };
  server.on('request', (req, res) => {
    state.inFlight += 1;
    req.resume();
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(address) });
      res.end(address, () => {
        state.inFlight -= 1;
        state.served += 1;
      });
    }, CHURN_DELAY);
  });
  server.listen(port, address);
  await once(server, 'listening');
  return state;
}

interface Gateway {
  readonly registry: UpstreamRegistry;
  readonly proxy: ResilientProxy;
  readonly server: Server;
  readonly port: number;
  readonly agent: Agent;
}

async function gateway(options: ProxyOptions, registry = new UpstreamRegistry()): Promise<Gateway> {
  const proxy = createProxy({ registry, ...options });
  const server = createServer(proxy).listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { registry, proxy, server, port: (server.address() as AddressInfo).port, agent: new Agent({ keepAlive: true }) };
}

async function closeGateway(g: Gateway): Promise<void> {
  g.agent.destroy();
  g.server.closeAllConnections();
  g.server.close();
  await g.proxy.close();
  g.registry.close();
}

async function closeServer(server: Server): Promise<void> {
  if (!server.listening) return;
  const closed = once(server, 'close');
  server.close();
  server.closeIdleConnections();
  await closed;
}

interface Answer {
  readonly status: number;
  readonly stale: boolean;
}

function ask(agent: Agent, port: number, path: string): Promise<Answer> {
  return new Promise((resolve) => {
    request({ host: '127.0.0.1', port, path, agent, headers: { host: 'gateway.test' } }, (res) => {
      res.resume();
      const cacheStatus = res.headers['cache-status'];
      res.once('end', () => resolve({ status: res.statusCode ?? 0, stale: typeof cacheStatus === 'string' && cacheStatus.includes('fwd=stale') }));
      res.once('error', () => resolve({ status: 0, stale: false }));
    })
      .once('error', () => resolve({ status: 0, stale: false }))
      .end();
  });
}

/** A steady load of RATE requests a second, round-robin over `gateways`, until `stop()`; `done` resolves once every answer is in. */
function load(gateways: readonly Gateway[], path: (n: number) => string, onAnswer: (instance: number, answer: Answer) => void): { stop: () => void; done: Promise<number> } {
  const pending: Promise<void>[] = [];
  let sent = 0;
  let stopped = false;
  let tick: NodeJS.Timeout | undefined;
  const done = new Promise<number>((resolve) => {
    tick = setInterval(() => {
      if (stopped) {
        clearInterval(tick);
        void Promise.all(pending).then(() => resolve(sent));
        return;
      }
      for (let i = 0; i < RATE / 100; i += 1) {
        const instance = sent % gateways.length;
        const target = gateways[instance] as Gateway;
        pending.push(ask(target.agent, target.port, path(sent)).then((answer) => onAnswer(instance, answer)));
        sent += 1;
      }
    }, 10);
  });
  return { stop: () => (stopped = true), done };
}

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Change {
  readonly change: string;
  /** From the DNS server answering the new records to the last instance's group holding exactly them, in ms. */
  readonly reachedAllMs: number;
  /** The same for the median instance, in ms. */
  readonly reachedMedianMs: number;
  /** Requests the removed replica was carrying when the change was made (all answered: see errors). */
  readonly inFlightOnRemoved: number | null;
  /** `failed` discovery events during the change (the DNS server down: each instance kept its last good hosts). */
  readonly dnsFailures: number;
}

interface ChurnRun {
  readonly fleet: number;
  readonly sent: number;
  readonly answered200: number;
  readonly errors: number;
  readonly changes: readonly Change[];
}

async function churn(fleet: number): Promise<ChurnRun> {
  const first = await churnReplica('127.0.0.2', 0);
  const port = (first.server.address() as AddressInfo).port;
  const replicas = new Map<string, ChurnReplica>([[first.address, first]]);
  for (const address of ['127.0.0.3', '127.0.0.4', '127.0.0.5']) replicas.set(address, await churnReplica(address, port));
  const records = (addresses: readonly string[]): [string, string][] => addresses.map((address) => [address, NAME]);
  const dns: Dnsmasq = await startDnsmasq({ hosts: records(['127.0.0.2', '127.0.0.3']) }, CHURN_TTL);
  let failures = 0;
  const listeners = new Set<() => void>();
  const gateways: Gateway[] = [];
  for (let n = 0; n < fleet; n += 1) {
    gateways.push(
      await gateway({
        name: 'orders',
        target: { dns: NAME, port, servers: [dns.server], ...(smoke ? { refresh: { min: 50, max: 200 } } : {}) },
        hooks: {
          onDiscovery: (event) => {
            if (event.kind === 'failed') failures += 1;
            for (const listener of [...listeners]) listener();
          },
        },
      }),
    );
  }
  const hostsOf = (g: Gateway): string =>
    (g.registry.snapshot()[0]?.hosts ?? [])
      .map((host) => new URL(host.url).hostname)
      .sort()
      .join(' ');
  /** Resolves with each instance's time to hold exactly `addresses`, in ms from now. */
  const reached = (addresses: readonly string[]): Promise<number[]> => {
    const want = [...addresses].sort().join(' ');
    const start = performance.now();
    const times = gateways.map(() => Number.NaN);
    return new Promise((resolve) => {
      const check = (): void => {
        for (const [n, g] of gateways.entries()) if (Number.isNaN(times[n]) && hostsOf(g) === want) times[n] = performance.now() - start;
        if (times.some(Number.isNaN)) return;
        listeners.delete(check);
        resolve(times);
      };
      listeners.add(check);
      check();
    });
  };
  await reached(['127.0.0.2', '127.0.0.3']);

  let answered200 = 0;
  let errors = 0;
  const traffic = load(gateways, () => '/orders', (_instance, answer) => {
    if (answer.status === 200) answered200 += 1;
    else errors += 1;
  });
  const changes: Change[] = [];
  const step = async (change: string, addresses: readonly string[], apply: () => Promise<void>, removed?: string): Promise<void> => {
    await delay(CHURN_HOLD);
    const leaving = removed === undefined ? undefined : replicas.get(removed);
    const inFlightOnRemoved = leaving?.inFlight ?? null;
    const failuresBefore = failures;
    await apply();
    const times = await reached(addresses);
    if (leaving !== undefined) {
      // Drained: no instance sends it anything new; it finishes what it carries, then goes away.
      while (leaving.inFlight > 0) await delay(5);
      await closeServer(leaving.server);
    }
    changes.push({ change, reachedAllMs: Math.max(...times), reachedMedianMs: median(times), inFlightOnRemoved, dnsFailures: failures - failuresBefore });
  };
  await step('replica added (records changed, SIGHUP)', ['127.0.0.2', '127.0.0.3', '127.0.0.4'], () => dns.reload(records(['127.0.0.2', '127.0.0.3', '127.0.0.4'])));
  await step('replica removed (SIGHUP), drained', ['127.0.0.3', '127.0.0.4'], () => dns.reload(records(['127.0.0.3', '127.0.0.4'])), '127.0.0.2');
  await step('DNS server down 1 s, restarted with a replica added', ['127.0.0.3', '127.0.0.4', '127.0.0.5'], async () => {
    await dns.stop();
    await delay(smoke ? 200 : 1000);
    await dns.restart({ hosts: records(['127.0.0.3', '127.0.0.4', '127.0.0.5']) });
  });
  await step('DNS server restarted with a replica removed, drained', ['127.0.0.4', '127.0.0.5'], () => dns.restart({ hosts: records(['127.0.0.4', '127.0.0.5']) }), '127.0.0.3');
  await delay(CHURN_HOLD);
  traffic.stop();
  const sent = await traffic.done;
  for (const g of gateways) await closeGateway(g);
  for (const replica of replicas.values()) {
    replica.server.closeAllConnections();
    await closeServer(replica.server);
  }
  await dns.close();
  return { fleet, sent, answered200, errors, changes };
}

// ---------------------------------------------------------------------------
// 3. An outage served stale by every instance.

const STALE_FLEETS = smoke ? [3] : [10, 50];
/** Paths the warm instance is asked for once each, before the outage. */
const STALE_PATHS = 20;
const OUTAGE_SECONDS = smoke ? 0.5 : 5;

interface StaleRun {
  readonly fleet: number;
  readonly store: 'redis' | 'memory';
  readonly sent: number;
  /** Per instance (the first is the one that kept the responses): the share of its answers served stale. */
  readonly staleShare: readonly number[];
  readonly errors: number;
  /** Redis lookups that took longer than the store's `timeout` (each a miss, answered with the contract). */
  readonly lookupTimeouts: number | null;
}

async function staleOutage(redis: RedisServer, fleet: number, store: StaleRun['store']): Promise<StaleRun> {
  const origins = await Promise.all(
    [0, 1, 2].map(async () => {
      const server = createServer((req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' });
        res.end(`kept: ${req.url ?? ''}`);
      });
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      return server;
    }),
  );
  const target = origins.map((server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  const prefix = `bench:${store}:${fleet}:`;
  const clients: Redis[] = [];
  const stores: RedisStaleStore[] = [];
  const gateways: Gateway[] = [];
  for (let n = 0; n < fleet; n += 1) {
    let staleIfError: ProxyOptions['staleIfError'] = true;
    if (store === 'redis') {
      const client = new Redis({ host: '127.0.0.1', port: redis.port, enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true });
      await client.connect();
      const shared = new RedisStaleStore({ client, prefix });
      clients.push(client);
      stores.push(shared);
      staleIfError = { store: shared };
    }
    gateways.push(await gateway({ name: 'orders', target, staleIfError }));
  }
  const warm = gateways[0] as Gateway;
  for (let path = 0; path < STALE_PATHS; path += 1) {
    const answer = await ask(warm.agent, warm.port, `/items/${path}`);
    if (answer.status !== 200) throw new Error(`warm-up answered ${answer.status}`);
  }
  // The kept responses' writes are answered: one connection answers in order.
  await clients[0]?.ping();
  for (const server of origins) {
    server.closeAllConnections();
    await closeServer(server);
  }
  const asked = gateways.map(() => 0);
  const stale = gateways.map(() => 0);
  let errors = 0;
  const traffic = load(gateways, (n) => `/items/${n % STALE_PATHS}`, (instance, answer) => {
    asked[instance] = (asked[instance] ?? 0) + 1;
    if (answer.stale && answer.status === 200) stale[instance] = (stale[instance] ?? 0) + 1;
    else errors += 1;
  });
  await delay(OUTAGE_SECONDS * 1000);
  traffic.stop();
  const sent = await traffic.done;
  for (const g of gateways) await closeGateway(g);
  const lookupTimeouts = store === 'redis' ? stores.reduce((sum, shared) => sum + shared.status().timeouts, 0) : null;
  for (const shared of stores) shared.close();
  for (const client of clients) client.disconnect();
  return { fleet, store, sent, staleShare: asked.map((count, n) => (count === 0 ? 0 : (stale[n] ?? 0) / count)), errors, lookupTimeouts };
}

// ---------------------------------------------------------------------------
// 4. The Redis store's cost per request: gateway processes of their own.

const COST_PATHS = smoke ? 100 : 1000;
const COST_ROUNDS = smoke ? 1 : 7;
const COST_SECONDS = smoke ? 0.5 : 3;
const COST_CONNECTIONS = 20;

interface Reading {
  readonly cpu: number;
  readonly timeouts: number;
}

async function serve(): Promise<void> {
  const body = Buffer.alloc(1024, 'k');
  let store: RedisStaleStore | undefined;
  let handler;
  if (mode === 'upstream') {
    handler = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length, 'cache-control': 'max-age=60' });
      res.end(body);
    });
  } else {
    if (mode === 'redis') {
      const client = new Redis({ host: '127.0.0.1', port: Number(redisPort), enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true });
      await client.connect();
      store = new RedisStaleStore({ client });
    }
    const staleIfError: ProxyOptions['staleIfError'] = store === undefined ? true : { store };
    handler = createServer(createProxy({ target: upstreamUrl ?? '', registry: new UpstreamRegistry(), staleIfError }));
  }
  handler.listen(0, '127.0.0.1');
  await once(handler, 'listening');
  // Asked (any message), it answers its CPU time in µs (the cost per request that holds on a busy machine) and its Redis lookups past `timeout`.
  process.on('message', () => {
    const used = process.cpuUsage();
    const reading: Reading = { cpu: used.user + used.system, timeouts: store?.status().timeouts ?? 0 };
    process.send?.(reading);
  });
  process.send?.((handler.address() as AddressInfo).port);
}

/** A gateway process's CPU time so far, in µs, and its Redis lookups past `timeout`. */
function read(child: ChildProcess): Promise<Reading> {
  const answer = once(child, 'message') as Promise<[Reading]>;
  child.send('read');
  return answer.then(([reading]) => reading);
}

interface CostSide {
  readonly store: 'memory' | 'redis';
  /** Medians over the rounds. */
  readonly rps: number;
  /** The gateway process's CPU time per request, in µs (Redis's own process not included). */
  readonly cpuUs: number;
  /** Answers that were not 200 (on a hit: a miss answered with the contract). */
  readonly non200: number;
  /** Redis lookups past the store's `timeout` (each a miss). */
  readonly lookupTimeouts: number;
}

interface CostPhase {
  readonly phase: 'keep' | 'hit';
  readonly sides: readonly CostSide[];
  /** Redis over memory, the medians of the rounds' ratios: req/s, and CPU time per request. */
  readonly rpsRatio: number;
  readonly cpuRatio: number;
  /** Each round's ratios, for their spread. */
  readonly rpsRatios: readonly number[];
  readonly cpuRatios: readonly number[];
}

type Started = Awaited<ReturnType<typeof startServer>>;

interface CostProcesses {
  readonly upstream: Started;
  readonly contenders: readonly (Started & { readonly store: 'memory' | 'redis' })[];
}

/** The upstream and the two gateway processes (started while the other parts run: a process's start is slow on a busy machine). */
async function startCostProcesses(redis: RedisServer, started: Started[]): Promise<CostProcesses> {
  const start = async (kind: string, target = ''): Promise<Started> => {
    const one = await startServer(import.meta.url, ['serve', kind, target, String(redis.port)]);
    started.push(one);
    return one;
  };
  const upstream = await start('upstream');
  const [memory, shared] = await Promise.all([start('memory', upstream.url), start('redis', upstream.url)]);
  return {
    upstream,
    contenders: [
      { store: 'memory', ...memory },
      { store: 'redis', ...shared },
    ],
  };
}

async function storeCost({ upstream, contenders }: CostProcesses): Promise<{ rounds: number; seconds: number; connections: number; paths: number; phases: CostPhase[] }> {
  /** One autocannon run over the paths in turn: `amount` requests, or `COST_SECONDS`. */
  const drive = (url: string, amount?: number): Promise<autocannon.Result> => {
    let next = 0;
    return autocannon({
      url,
      connections: COST_CONNECTIONS,
      ...(amount === undefined ? { duration: COST_SECONDS } : { amount }),
      requests: [{ method: 'GET', setupRequest: (req) => ({ ...req, path: `/item/${String(next++ % COST_PATHS)}` }) }],
    });
  };
  // Every path kept once by each (and both warmed up) before anything is measured.
  await Promise.all(contenders.map((contender) => drive(contender.url, COST_PATHS)));
  const phases: CostPhase[] = [];
  for (const phase of ['keep', 'hit'] as const) {
    if (phase === 'hit') {
      upstream.child.kill();
      await once(upstream.child, 'exit');
    }
    const sinks = contenders.map(() => ({ rps: [] as number[], cpu: [] as number[], non200: 0, timeouts: 0 }));
    const rpsRatios: number[] = [];
    const cpuRatios: number[] = [];
    for (let round = 0; round < COST_ROUNDS; round += 1) {
      // Both at once: the machine's noise falls on both alike, and each round's ratio compares like with like.
      await Promise.all(
        contenders.map(async (contender, index) => {
          const sink = sinks[index];
          if (sink === undefined) return;
          const before = await read(contender.child);
          const result = await drive(contender.url);
          const after = await read(contender.child);
          sink.rps.push(result.requests.average);
          sink.cpu.push((after.cpu - before.cpu) / Math.max(1, result.requests.total));
          sink.non200 += result.non2xx + result.errors;
          sink.timeouts += after.timeouts - before.timeouts;
        }),
      );
      const [memory, shared] = sinks;
      rpsRatios.push((shared?.rps[round] ?? 0) / (memory?.rps[round] ?? 1));
      cpuRatios.push((shared?.cpu[round] ?? 0) / (memory?.cpu[round] ?? 1));
    }
    phases.push({
      phase,
      sides: contenders.map((contender, index) => {
        const sink = sinks[index] ?? { rps: [], cpu: [], non200: 0, timeouts: 0 };
        return { store: contender.store, rps: Math.round(median(sink.rps)), cpuUs: Math.round(median(sink.cpu)), non200: sink.non200, lookupTimeouts: sink.timeouts };
      }),
      rpsRatio: median(rpsRatios),
      cpuRatio: median(cpuRatios),
      rpsRatios,
      cpuRatios,
    });
  }
  return { rounds: COST_ROUNDS, seconds: COST_SECONDS, connections: COST_CONNECTIONS, paths: COST_PATHS, phases };
}

// ---------------------------------------------------------------------------

async function main(): Promise<void> {
  const redis = await startRedis();
  const started: Started[] = [];
  const costProcesses = startCostProcesses(redis, started);
  // A start that fails before it is awaited is reported where it is awaited, not as an unhandled rejection.
  costProcesses.catch(() => undefined);
  try {
    const configs: [string, Pick<ProxyOptions, 'breaker' | 'retry'>][] = smoke
      ? [['defaults', {}]]
      : [
          ['defaults', {}],
          ['breaker off (budget only)', { breaker: false }],
        ];
    const runs: Run[] = [];
    for (const outage of ['one host', 'every host'] as const) {
      for (const [config, options] of configs) {
        for (const fleet of FLEETS) runs.push(await run(fleet, outage, config, options));
      }
    }
    const churns: ChurnRun[] = [];
    for (const fleet of FLEETS) churns.push(await churn(fleet));
    const outages: StaleRun[] = [];
    for (const fleet of STALE_FLEETS) for (const store of ['redis', 'memory'] as const) outages.push(await staleOutage(redis, fleet, store));
    const cost = await storeCost(await costProcesses);
    const results = {
      date: new Date().toISOString().slice(0, 10),
      node: process.version,
      seconds: SECONDS,
      rate: RATE,
      runs,
      churn: { rate: RATE, ttl: CHURN_TTL, holdMs: CHURN_HOLD, replicaDelayMs: CHURN_DELAY, runs: churns },
      stale: { rate: RATE, seconds: OUTAGE_SECONDS, paths: STALE_PATHS, runs: outages },
      cost,
    };
    if (!smoke) writeFileSync(new URL('results/fleet.json', import.meta.url), `${JSON.stringify(results, null, 2)}\n`);
    console.log(`${smoke ? '(smoke run: figures mean nothing)\n' : ''}${fleetBlock(results)}`);
  } finally {
    await costProcesses.catch(() => undefined);
    for (const { child } of started) child.kill();
    await redis.close();
  }
}

if (role === 'serve') await serve();
else await main();

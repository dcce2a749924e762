// `npx tsx bench/tail.ts`: the slow tail of a healthy fleet, and what hedged
// requests take off it. Three replicas (one process) answer at once, except
// that one of them holds every 20th of its responses (5 %) for SLOW_MS. Every
// gateway, each in its own process, is driven open-loop at RATE GET/s for the
// same time, all at once, so that a stall of the shared machine (or of the
// client) falls on every one alike; the replicas count requests by the
// client's `x-gateway` tag. Gateways: resilient-proxy without and with
// `hedge: true` (the defaults: a hedge after the p95 of recent head latency,
// at least 10 ms, within a 10 % budget), each with its default latency-aware
// balancer and with round-robin (which isolates what hedging does from what
// the balancer already does), nginx with an upstream block of the three, and
// http-proxy-middleware with a round-robin router.
// Extra load is what the replicas received over what the client sent.
//
//   npx tsx bench/tail.ts            120 s, writes bench/results/tail.json
//   npx tsx bench/tail.ts --smoke    2 s, to prove it works (prints, writes nothing)
//
// `npm run bench:docs` renders bench/results/tail.json into BENCHMARKS.md.

import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent as HttpAgent, createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import express from 'express';
import { createProxyMiddleware } from 'http-proxy-middleware';
import { Agent, request } from 'undici';
import { createProxy, UpstreamRegistry, type UpstreamSnapshot } from 'resilient-proxy';
import { median, startServer } from './forked.js';
import { nginxVersion, startNginxIn } from './nginx.js';
import { tailBlock, type TailResults, type TailRow } from './sections/tail.js';

const SLOW_MS = 500;
/** One response in this many from the slow replica is held SLOW_MS. */
const SLOW_EVERY = 20;
/** GET/s per gateway, all four at once. */
const RATE = 40;
const CLIENT_TIMEOUT_MS = 5_000;
const WARMUP_S = 1;
const RESULTS = new URL('results/tail.json', import.meta.url);

const [, , role, arg] = process.argv;

interface Reply {
  readonly ports?: number[];
  /** Requests received, by the gateway that sent them (the client's `x-gateway` header, passed on by every gateway). */
  readonly counts?: Record<string, number>;
  readonly snapshot?: UpstreamSnapshot | null;
}

/** The three replicas in one process; they count what they receive. */
async function serveReplicas(): Promise<void> {
  const counts: Record<string, number> = {};
  const ports: number[] = [];
  for (let replica = 0; replica < 3; replica += 1) {
    let seen = 0;
    const server = createServer((req, res) => {
      const gateway = String(req.headers['x-gateway']);
      counts[gateway] = (counts[gateway] ?? 0) + 1;
      seen += 1;
      req.resume();
      const answer = (): void => {
        if (!res.destroyed) res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 }).end('ok');
      };
      if (replica === 2 && seen % SLOW_EVERY === 0) setTimeout(answer, SLOW_MS);
      else answer();
    });
    server.keepAliveTimeout = 60_000;
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    ports.push((server.address() as AddressInfo).port);
  }
  process.on('message', (command: { cmd: string }) => {
    if (command.cmd === 'count') process.send?.({ counts } satisfies Reply);
    else if (command.cmd === 'ports') process.send?.({ ports } satisfies Reply);
  });
  process.send?.(ports[0]);
}

/** One gateway in its own process: `rp`, `rp-hedged` or `hpm` in front of the replicas. */
async function serveGateway(kind: string, targets: string[]): Promise<void> {
  let server: Server;
  const registry = new UpstreamRegistry();
  if (kind === 'hpm') {
    let next = 0;
    const agent = new HttpAgent({ keepAlive: true });
    const app = express();
    app.use('/', createProxyMiddleware({ target: targets[0] ?? '', router: () => targets[next++ % targets.length] ?? '', agent }));
    server = createServer(app);
  } else {
    const hedged = kind.endsWith('-hedged') ? { hedge: true } : {};
    const balance = kind.startsWith('rp-rr') ? { balance: 'round-robin' as const } : {};
    server = createServer(createProxy({ target: targets, name: 'tail', registry, ...hedged, ...balance }));
  }
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  process.on('message', (command: { cmd: string }) => {
    if (command.cmd === 'snapshot') process.send?.({ snapshot: registry.get('tail') ?? null } satisfies Reply);
  });
  process.send?.((server.address() as AddressInfo).port);
}

function ask(child: ChildProcess, cmd: string): Promise<Reply> {
  return new Promise((resolve) => {
    const onMessage = (message: unknown): void => {
      if (typeof message !== 'object' || message === null) return;
      child.off('message', onMessage);
      resolve(message);
    };
    child.on('message', onMessage);
    child.send({ cmd });
  });
}


async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i += 1) {
    const ok = await request(`http://127.0.0.1:${port}/`).then(
      async (r) => {
        await r.body.dump();
        return true;
      },
      () => false,
    );
    if (ok) return;
    await delay(50);
  }
  throw new Error(`nothing listens on ${port}`);
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

/** nginx with an upstream block of the three replicas, as a user would write it. */
async function startNginx(ports: readonly number[]): Promise<{ url: string; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'rp-bench-tail-nginx-'));
  const port = await freePort();
  const child = startNginxIn(dir, port, ports);
  await waitForPort(port);
  return {
    url: `http://127.0.0.1:${port}`,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Drives `url` open-loop at RATE GET/s for `seconds`, tagged `id`; latencies of the 200s, and the count of the rest. */
async function drive(url: string, id: string, seconds: number): Promise<{ latencies: number[]; errors: number; sent: number }> {
  const client = new Agent({ connections: null, keepAliveTimeout: 60_000 });
  const latencies: number[] = [];
  let errors = 0;
  const pending: Promise<void>[] = [];
  const fire = (): void => {
    const started = performance.now();
    pending.push(
      request(`${url}/item`, { dispatcher: client, headers: { 'x-gateway': id }, signal: AbortSignal.timeout(CLIENT_TIMEOUT_MS) })
        .then(async (response) => {
          await response.body.dump();
          if (response.statusCode === 200) latencies.push(performance.now() - started);
          else errors += 1;
        })
        .catch(() => {
          errors += 1;
        }),
    );
  };
  const started = performance.now();
  let sent = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const due = Math.floor(((performance.now() - started) / 1000) * RATE);
      for (; sent < due; sent += 1) fire();
      if (performance.now() - started >= seconds * 1000) {
        clearInterval(timer);
        resolve();
      }
    }, 5);
  });
  await Promise.all(pending);
  await client.close();
  return { latencies, errors, sent };
}

/** The q-quantile (0..1) of sorted values, nearest rank. */
function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN;
}

interface Contender {
  readonly id: string;
  readonly label: string;
  readonly url: string;
  readonly snapshot?: () => Promise<UpstreamSnapshot | null>;
  stop(): Promise<void>;
}

interface Tally {
  latencies: number[];
  errors: number;
  sent: number;
  upstream: number;
  hedges: number | null;
  /** Each round's own p99. */
  roundP99: number[];
}

/** Drives every contender at once for `seconds`: a stall of the shared machine (or of the client) falls on all of them alike. */
async function together(contenders: readonly Contender[], replicas: ChildProcess, seconds: number): Promise<Tally[]> {
  const before = (await ask(replicas, 'count')).counts ?? {};
  const hedgesBefore = await Promise.all(contenders.map(async (c) => (await c.snapshot?.())?.hedge?.hedges ?? null));
  const runs = await Promise.all(contenders.map((c) => drive(c.url, c.id, seconds)));
  const after = (await ask(replicas, 'count')).counts ?? {};
  const hedgesAfter = await Promise.all(contenders.map(async (c) => (await c.snapshot?.())?.hedge?.hedges ?? null));
  return contenders.map((c, i) => {
    const run = runs[i] ?? { latencies: [], errors: 0, sent: 0 };
    const from = hedgesBefore[i] ?? null;
    const to = hedgesAfter[i] ?? null;
    const sorted = [...run.latencies].sort((a, b) => a - b);
    return { ...run, upstream: (after[c.id] ?? 0) - (before[c.id] ?? 0), hedges: from === null || to === null ? null : to - from, roundP99: [quantile(sorted, 0.99)] };
  });
}

function row(contender: Contender, tally: Tally): TailRow {
  const sorted = tally.latencies.sort((a, b) => a - b);
  return {
    id: contender.id,
    label: contender.label,
    requests: tally.sent,
    errors: tally.errors,
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    p999: quantile(sorted, 0.999),
    max: sorted.at(-1) ?? Number.NaN,
    upstreamRequests: tally.upstream,
    load: tally.upstream / tally.sent,
    hedges: tally.hedges,
    medianRoundP99: median(tally.roundP99),
  };
}

async function main(): Promise<void> {
  const smoke = process.argv.includes('--smoke');
  const seconds = smoke ? 2 : 120;
  const rounds = smoke ? 1 : 10;
  const replicas = await startServer(import.meta.url, ['replicas']);
  const { ports = [] } = await ask(replicas.child, 'ports');
  const targets = ports.map((p) => `http://127.0.0.1:${p}`);
  const notes: string[] = [];
  const contenders: Contender[] = [];
  const gateways: [string, string][] = [
    ['rp', 'resilient-proxy, defaults (no hedging)'],
    ['rp-hedged', 'resilient-proxy, `hedge: true`'],
    ['rp-rr', "resilient-proxy, `balance: 'round-robin'` (no hedging)"],
    ['rp-rr-hedged', "resilient-proxy, `balance: 'round-robin'`, `hedge: true`"],
    ['hpm', 'http-proxy-middleware 3, Express, round-robin router'],
  ];
  for (const [id, label] of gateways) {
    const gateway = await startServer(import.meta.url, ['gateway', JSON.stringify({ kind: id, targets })]);
    contenders.push({
      id,
      label,
      url: gateway.url,
      ...(id === 'hpm' ? {} : { snapshot: async () => (await ask(gateway.child, 'snapshot')).snapshot ?? null }),
      stop: () => {
        gateway.child.kill();
        return Promise.resolve();
      },
    });
  }
  const version = nginxVersion();
  if (version === null) notes.push('nginx: not installed, skipped.');
  else {
    const nginx = await startNginx(ports);
    contenders.push({ id: 'nginx', label: `nginx ${version}, upstream block of three`, url: nginx.url, stop: nginx.stop });
  }
  // A warm-up fills pools and, for the hedged gateway, its latency window.
  await together(contenders, replicas.child, WARMUP_S);
  // Rounds: a stall of the shared machine spoils a round's p99 for every
  // gateway at once; the median round's p99 is what is left without it.
  const tallies = contenders.map((): Tally => ({ latencies: [], errors: 0, sent: 0, upstream: 0, hedges: null, roundP99: [] }));
  for (let round = 0; round < rounds; round += 1) {
    const parts = await together(contenders, replicas.child, seconds / rounds);
    parts.forEach((part, i) => {
      const tally = tallies[i];
      if (tally === undefined) return;
      tally.latencies.push(...part.latencies);
      tally.errors += part.errors;
      tally.sent += part.sent;
      tally.upstream += part.upstream;
      tally.hedges = part.hedges === null ? tally.hedges : (tally.hedges ?? 0) + part.hedges;
      tally.roundP99.push(...part.roundP99);
    });
  }
  const rows = contenders.map((contender, i) => row(contender, tallies[i] ?? { latencies: [], errors: 0, sent: 0, upstream: 0, hedges: null, roundP99: [] }));
  for (const contender of contenders) await contender.stop();
  replicas.child.kill();

  const results: TailResults = {
    run: { date: new Date().toISOString(), node: process.version, smoke, seconds, rounds, rate: RATE, slowMs: SLOW_MS, slowShare: 1 / SLOW_EVERY, warmupSeconds: WARMUP_S },
    rows,
    notes,
  };
  console.log(tailBlock(results));
  if (!smoke) {
    writeFileSync(RESULTS, `${JSON.stringify(results, null, 2)}\n`);
    console.log(`\nwritten to bench/results/tail.json; npm run bench:docs puts it into BENCHMARKS.md`);
  }
}

if (role === 'replicas') await serveReplicas();
else if (role === 'gateway') {
  const { kind, targets } = JSON.parse(arg ?? '{}') as { kind: string; targets: string[] };
  await serveGateway(kind, targets);
} else await main();

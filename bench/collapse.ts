// `npx tsx bench/collapse.ts`: an upstream pushed into collapse, and what a
// concurrency limit in the proxy saves of it. The upstream (its own process)
// has WORKERS workers of SERVICE_MS each and an unbounded FIFO queue in front,
// so its latency grows with its concurrency; like most servers it does not
// notice that a caller gave up, so abandoned requests still take a worker.
// An open-loop client drives each gateway at 4× the upstream's capacity for
// the same time, one gateway at a time, each against a fresh upstream:
// goodput is the 200s answered within the SLO per second; p99 is over those
// 200s. Gateways: no limit, fixed `breaker.capacity` too low, two near right,
// too high, and `adaptiveConcurrency` (the reference's defaults, min 20).
//
//   npx tsx bench/collapse.ts            15 s per gateway
//   npx tsx bench/collapse.ts --smoke    2 s per gateway, to prove it works (writes nothing)

import { once } from 'node:events';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import { startServer } from './forked.js';
import { startRun, writeRecord } from './record.js';
import { createProxy, UpstreamRegistry, type ProxyOptions } from 'resilient-proxy';

const WORKERS = 4;
const SERVICE_MS = 50;
/** Requests per second the upstream can serve. */
const CAPACITY = (WORKERS * 1000) / SERVICE_MS;
const LOAD = 4 * CAPACITY;
const SLO_MS = 500;
/** The proxy gives up after this; the client after a little more. */
const TOTAL_MS = 2000;

const [, , role] = process.argv;

/** The upstream: WORKERS at a time, the rest wait in line, served whether or not their caller is still there. */
async function serveUpstream(): Promise<void> {
  const queue: ServerResponse[] = [];
  let busy = 0;
  const next = (): void => {
    const res = queue.shift();
    if (res === undefined) return;
    busy += 1;
    setTimeout(() => {
      busy -= 1;
      if (!res.destroyed) res.writeHead(200, { 'content-length': 2 }).end('ok');
      next();
    }, SERVICE_MS);
  };
  const server = createServer((_req, res) => {
    queue.push(res);
    if (busy < WORKERS) next();
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  process.send?.((server.address() as AddressInfo).port);
}

interface Result {
  name: string;
  goodput: number;
  p99: number;
  refused: number;
  timedOut: number;
  limit: string;
  /** The adaptive limit when the run ended, or null for a fixed one or none. */
  adaptiveLimit: number | null;
}

async function drive(name: string, options: Partial<ProxyOptions>, seconds: number): Promise<Result> {
  const upstream = await startServer(import.meta.url, ['upstream']);
  const registry = new UpstreamRegistry();
  const proxy = createProxy({ target: upstream.url, name: 'collapse', registry, timeout: { total: TOTAL_MS }, retry: false, breaker: false, ...options });
  const gateway = createServer(proxy);
  gateway.listen(0, '127.0.0.1');
  await once(gateway, 'listening');
  const url = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}/`;
  const client = new Agent({ connections: null, keepAliveTimeout: 60_000 });
  const latencies: number[] = [];
  let refused = 0;
  let timedOut = 0;
  const pending: Promise<void>[] = [];
  const fire = (): void => {
    const started = performance.now();
    pending.push(
      request(url, { dispatcher: client, signal: AbortSignal.timeout(TOTAL_MS + 500) })
        .then(async (response) => {
          await response.body.dump();
          const took = performance.now() - started;
          if (response.statusCode === 200) latencies.push(took);
          else if (String(response.headers['proxy-status']).includes('connection_limit_reached')) refused += 1;
          else timedOut += 1;
        })
        .catch(() => {
          timedOut += 1;
        }),
    );
  };
  // Open loop: a batch every 5 ms, whatever the answers do.
  const started = performance.now();
  let sent = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const due = Math.floor(((performance.now() - started) / 1000) * LOAD);
      for (; sent < due; sent += 1) fire();
      if (performance.now() - started >= seconds * 1000) {
        clearInterval(timer);
        resolve();
      }
    }, 1000 / 200);
  });
  await Promise.all(pending);
  const snapshot = registry.get('collapse');
  const limit = snapshot?.limit ? `adaptive, ended at ${snapshot.limit.current}` : snapshot?.capacity == null ? 'none' : `fixed ${snapshot.capacity}`;
  const good = latencies.filter((ms) => ms <= SLO_MS).length;
  const sorted = [...latencies].sort((a, b) => a - b);
  gateway.close();
  await proxy.close();
  await client.close();
  registry.close();
  upstream.child.kill();
  return { name, goodput: good / seconds, p99: sorted[Math.floor(sorted.length * 0.99)] ?? Number.NaN, refused, timedOut, limit, adaptiveLimit: snapshot?.limit?.current ?? null };
}

async function main(): Promise<void> {
  const smoke = process.argv.includes('--smoke');
  const seconds = smoke ? 2 : 15;
  const recording = startRun();
  const contenders: [string, Partial<ProxyOptions>][] = [
    ['no limit', {}],
    ['fixed, too low (2)', { breaker: { capacity: 2 } }],
    ['fixed (8)', { breaker: { capacity: 8 } }],
    ['fixed (32)', { breaker: { capacity: 32 } }],
    ['fixed, too high (200)', { breaker: { capacity: 200 } }],
    ['adaptiveConcurrency: true', { adaptiveConcurrency: true }],
  ];
  const results: Result[] = [];
  for (const [name, options] of contenders) results.push(await drive(name, options, seconds));
  console.log(
    `collapse: upstream of ${WORKERS} workers × ${SERVICE_MS} ms (${CAPACITY} req/s) behind an unbounded queue, driven open-loop at ${LOAD} req/s for ${seconds} s per gateway; SLO ${SLO_MS} ms; proxy timeout.total ${TOTAL_MS} ms${smoke ? ' (smoke run: figures mean nothing)' : ''}`,
  );
  console.log('| gateway | goodput (200 within SLO, req/s) | p99 of 200s (ms) | refused at once | timed out | limit |');
  console.log('|---|---:|---:|---:|---:|---|');
  for (const r of results) {
    console.log(`| ${r.name} | ${r.goodput.toFixed(0)} | ${r.p99.toFixed(0)} | ${r.refused} | ${r.timedOut} | ${r.limit} |`);
  }
  const best = Math.max(...results.filter((r) => r.name.startsWith('fixed')).map((r) => r.goodput));
  const adaptive = results.find((r) => r.name.startsWith('adaptive'));
  console.log(`adaptive goodput / best fixed in hindsight: ${((adaptive?.goodput ?? 0) / best).toFixed(2)}×`);
  writeRecord('collapse', smoke, {
    run: recording.finish(),
    workers: WORKERS,
    serviceMs: SERVICE_MS,
    capacity: CAPACITY,
    load: LOAD,
    sloMs: SLO_MS,
    totalMs: TOTAL_MS,
    seconds,
    results: results.map((r) => ({ ...r, goodput: Math.round(r.goodput), p99: Math.round(r.p99) })),
  });
}

if (role === 'upstream') await serveUpstream();
else await main();

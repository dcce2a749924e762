// How long the proxy takes to refuse a request while the circuit is open,
// against answering a refused connection (nothing listening on the port),
// measured inside the server from request arrival to (a) the proxy calling
// res.end() with the complete error response and (b) Node's 'finish', when
// the response was handed to the socket (this adds Node's own write cost,
// the same on both paths).
// Run: npx tsx bench/breaker-refusal.ts [requests]

import { once } from 'node:events';
import { createServer, request, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createProxy, UpstreamRegistry } from '../src/index.js';
import { refusedUrl } from '../src/testing/index.js';

const count = Number(process.argv[2] ?? 5000);

function get(url: string, agent: import('node:http').Agent): Promise<void> {
  return new Promise((resolve, reject) => {
    request(url, { agent }, (res) => {
      res.resume();
      res.once('end', resolve);
    })
      .once('error', reject)
      .end();
  });
}

interface Times {
  end: number[];
  finish: number[];
}

/** Serves `listener`, sends `n` sequential keep-alive requests, returns the server-side durations in µs. */
async function serverSideTimes(listener: RequestListener, n: number): Promise<Times> {
  const times: Times = { end: [], finish: [] };
  const server = createServer((req, res) => {
    const start = process.hrtime.bigint();
    const end = res.end.bind(res) as (...args: unknown[]) => typeof res;
    res.end = ((...args: unknown[]) => {
      times.end.push(Number(process.hrtime.bigint() - start) / 1000);
      return end(...args);
    }) as typeof res.end;
    res.once('finish', () => times.finish.push(Number(process.hrtime.bigint() - start) / 1000));
    listener(req, res);
  }).listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/x`;
  const { Agent } = await import('node:http');
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < n; i += 1) await get(url, agent);
  agent.destroy();
  server.close();
  return times;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

const target = await refusedUrl();
const registry = new UpstreamRegistry();
const refusing = createProxy({ target, retry: false, breaker: false, registry });
const breaking = createProxy({ target, name: 'open-circuit', retry: false, breaker: { volumeThreshold: 1, resetTimeout: 3_600_000 }, registry });

// Warm both paths, and open the circuit.
await serverSideTimes(refusing, 500);
await serverSideTimes(breaking, 500);
if (registry.get('open-circuit')?.state !== 'open') throw new Error('the circuit did not open');

const rounds = 5;
const results = { refused: { end: [] as number[], finish: [] as number[] }, open: { end: [] as number[], finish: [] as number[] } };
for (let round = 0; round < rounds; round += 1) {
  for (const [key, listener] of [['refused', refusing], ['open', breaking]] as const) {
    const times = await serverSideTimes(listener, count / rounds);
    results[key].end.push(median(times.end));
    results[key].finish.push(median(times.finish));
  }
}
console.log(`${count} sequential requests per path, ${rounds} interleaved rounds; median of the round medians, in µs (min-max of rounds):`);
for (const measure of ['end', 'finish'] as const) {
  const refused = results.refused[measure];
  const open = results.open[measure];
  const range = (values: number[]) => `${Math.min(...values).toFixed(0)}-${Math.max(...values).toFixed(0)}`;
  console.log(`  until ${measure === 'end' ? 'res.end()' : "'finish' "}: refused connection ${median(refused).toFixed(1)} (${range(refused)}), circuit open ${median(open).toFixed(1)} (${range(open)}), ratio ${(median(refused) / median(open)).toFixed(1)}x`);
}
await refusing.close();
await breaking.close();
registry.close();

// How long the proxy takes to refuse a request while the circuit is open,
// against answering a refused connection (nothing listening on the port),
// measured inside the server from request arrival to (a) the proxy knowing
// the answer and starting the response (writeHead), (b) the proxy calling
// res.end() with the complete error response and (c) Node's 'finish', when
// the response was handed to the socket (this adds Node's own write cost,
// the same on both paths).
// Run: npx tsx bench/breaker-refusal.ts [requests] [--json]

import { once } from 'node:events';
import { createServer, request, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createProxy, UpstreamRegistry } from 'resilient-proxy';
import { refusedUrl } from 'resilient-proxy/testing';

const count = Number(process.argv.find((arg) => /^\d+$/.test(arg)) ?? 5000);
const json = process.argv.includes('--json');

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
  head: number[];
  end: number[];
  finish: number[];
}

/** Serves `listener`, sends `n` sequential keep-alive requests, returns the server-side durations in µs. */
async function serverSideTimes(listener: RequestListener, n: number): Promise<Times> {
  const times: Times = { head: [], end: [], finish: [] };
  const server = createServer((req, res) => {
    const start = process.hrtime.bigint();
    const writeHead = res.writeHead.bind(res) as (...args: unknown[]) => typeof res;
    Object.assign(res, {
      writeHead: (...args: unknown[]) => {
        times.head.push(Number(process.hrtime.bigint() - start) / 1000);
        return writeHead(...args);
      },
    });
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
const measures = ['head', 'end', 'finish'] as const;
type Measure = (typeof measures)[number];
const results: Record<'refused' | 'open', Record<Measure, number[]>> = {
  refused: { head: [], end: [], finish: [] },
  open: { head: [], end: [], finish: [] },
};
for (let round = 0; round < rounds; round += 1) {
  for (const [key, listener] of [['refused', refusing], ['open', breaking]] as const) {
    const times = await serverSideTimes(listener, count / rounds);
    for (const measure of measures) results[key][measure].push(median(times[measure]));
  }
}
const labels: Record<Measure, string> = { head: 'writeHead()', end: 'res.end()', finish: "'finish'" };
const summary = measures.map((measure) => ({
  measure,
  until: labels[measure],
  refusedMicros: median(results.refused[measure]),
  openMicros: median(results.open[measure]),
  refusedRange: [Math.min(...results.refused[measure]), Math.max(...results.refused[measure])],
  openRange: [Math.min(...results.open[measure]), Math.max(...results.open[measure])],
  ratio: median(results.refused[measure]) / median(results.open[measure]),
}));
if (json) {
  console.log(JSON.stringify({ count, rounds, summary }));
} else {
  console.log(`${count} sequential requests per path, ${rounds} interleaved rounds; median of the round medians, in µs (min-max of rounds):`);
  for (const row of summary) {
    const range = ([low = 0, high = 0]: number[]) => `${low.toFixed(0)}-${high.toFixed(0)}`;
    console.log(`  until ${row.until.padEnd(12)} refused connection ${row.refusedMicros.toFixed(1)} (${range(row.refusedRange)}), circuit open ${row.openMicros.toFixed(1)} (${range(row.openRange)}), ratio ${row.ratio.toFixed(1)}x`);
  }
}
await refusing.close();
await breaking.close();
registry.close();

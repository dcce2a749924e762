// Upstream amplification under a total outage: how many upstream requests
// each client request causes, with the default retry budget and without one.
// Run: npx tsx bench/retry-amplification.ts [clientRequests] [concurrency] [--json]

import { once } from 'node:events';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createProxy, DEFAULTS, UpstreamRegistry, type ProxyOptions } from 'resilient-proxy';
import { faults, startFaultUpstream } from 'resilient-proxy/testing';

const numbers = process.argv.filter((arg) => /^\d+$/.test(arg)).map(Number);
const total = numbers[0] ?? 2000;
const concurrency = numbers[1] ?? 50;
const json = process.argv.includes('--json');

function get(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    request(url, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
    })
      .once('error', reject)
      .end();
  });
}

async function measure(options: Pick<ProxyOptions, 'retry' | 'breaker'>): Promise<{ hits: number; ratio: number; seconds: number }> {
  const upstream = await startFaultUpstream({ fallback: faults.status(503) });
  const registry = new UpstreamRegistry();
  const proxy = createProxy({ target: upstream.url, ...options, registry });
  const server = createServer(proxy).listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/x`;
  const started = performance.now();
  let sent = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (sent < total) {
        sent += 1;
        await get(url);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  server.closeAllConnections();
  server.close();
  await proxy.close();
  registry.close();
  await upstream.close();
  return { hits: upstream.requests.length, ratio: upstream.requests.length / total, seconds };
}

const fast = { minDelay: 1, maxDelay: 10 };
const runs: [string, Pick<ProxyOptions, 'retry' | 'breaker'>][] = [
  ['defaults (breaker + budget)', { retry: fast }],
  ['budget only, no breaker', { retry: fast, breaker: false }],
  ['no budget, no breaker', { retry: { ...fast, budget: false }, breaker: false }],
];
const results = [];
for (const [label, options] of runs) results.push({ label, ...(await measure(options)) });
if (json) {
  console.log(JSON.stringify({ total, concurrency, retries: DEFAULTS.retry.retries, results }));
} else {
  console.log(`total outage (every upstream answer is 503), ${total} client GETs, concurrency ${concurrency}, retries: ${DEFAULTS.retry.retries}`);
  for (const result of results) {
    console.log(`${result.label.padEnd(28)} ${String(result.hits).padStart(6)} upstream requests = ${result.ratio.toFixed(3)}x in ${result.seconds.toFixed(1)} s`);
  }
}

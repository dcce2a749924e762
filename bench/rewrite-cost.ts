// `npx tsx bench/rewrite-cost.ts`: what rewriting costs per request. Two
// resilient-proxy gateways on bare node:http, each in its own process, side
// by side against one upstream process (1 KiB responses that carry a
// `Location` at the upstream host): one with no rewrite at all
// (`rewriteRedirects: false`), one with an async `headers.request` hook and
// `rewriteRedirects` on. Interleaved rounds of autocannon, 50 keep-alive
// connections; medians reported.
//
//   npx tsx bench/rewrite-cost.ts            5 rounds of 4 s; writes bench/results/rewrite-cost.json
//   npx tsx bench/rewrite-cost.ts --smoke    1 round of 1 s, to prove it works

import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import autocannon from 'autocannon';
import { median, startServer } from './forked.js';
import { startRun, writeRecord } from './record.js';
import { createProxy, UpstreamRegistry } from 'resilient-proxy';

const [, , role, mode, upstreamUrl] = process.argv;

async function serve(): Promise<void> {
  const server =
    mode === 'upstream'
      ? createServer((req, res) => {
          const body = Buffer.alloc(1024, 'k');
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length, location: `${upstreamUrl ?? ''}/next` });
          res.end(body);
        })
      : createServer(
          createProxy({
            target: upstreamUrl ?? '',
            registry: new UpstreamRegistry(),
            ...(mode === 'rewriting'
              ? { headers: { request: (headers) => Promise.resolve({ ...headers, authorization: 'Bearer token' }) }, rewriteRedirects: true }
              : { rewriteRedirects: false }),
          }),
        );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  process.send?.((server.address() as AddressInfo).port);
}

const start = (kind: string, target = ''): ReturnType<typeof startServer> => startServer(import.meta.url, ['serve', kind, target]);

async function main(): Promise<void> {
  const smoke = process.argv.includes('--smoke');
  const rounds = smoke ? 1 : 5;
  const seconds = smoke ? 1 : 4;
  const recording = startRun();
  // The upstream needs its own URL for the Location it sends: start it, then tell it.
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as AddressInfo).port;
  probe.close();
  const upstream = await start('upstream', `http://127.0.0.1:${port}`);
  const contenders = [
    { name: 'no rewrite (rewriteRedirects: false)', ...(await start('plain', upstream.url)), rps: [] as number[], p99: [] as number[] },
    { name: 'async headers.request + rewriteRedirects', ...(await start('rewriting', upstream.url)), rps: [] as number[], p99: [] as number[] },
  ];
  for (let round = 0; round < rounds; round += 1) {
    for (const contender of round % 2 === 0 ? contenders : [...contenders].reverse()) {
      const result = await autocannon({ url: `${contender.url}/1k`, connections: 50, duration: seconds });
      contender.rps.push(result.requests.average);
      contender.p99.push(result.latency.p99);
    }
  }
  for (const { child } of [upstream, ...contenders]) child.kill();
  writeRecord('rewrite-cost', smoke, {
    run: recording.finish(),
    rounds,
    seconds,
    connections: 50,
    rows: contenders.map((c) => ({ name: c.name, rps: Math.round(median(c.rps)), p99: median(c.p99) })),
  });
  const base = median(contenders[0]?.rps ?? []);
  console.log(`rewrite cost: 1 KiB responses with a Location, 50 connections, ${rounds} interleaved rounds of ${seconds} s, medians${smoke ? ' (smoke run: figures mean nothing)' : ''}`);
  console.log('| gateway | req/s | p99 ms | vs no rewrite |');
  console.log('|---|---|---|---|');
  for (const contender of contenders) {
    console.log(`| ${contender.name} | ${Math.round(median(contender.rps))} | ${median(contender.p99)} | ${(median(contender.rps) / base).toFixed(2)} |`);
  }
}

if (role === 'serve') await serve();
else await main();

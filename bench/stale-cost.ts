// `npx tsx bench/stale-cost.ts`: what keeping responses for stale on error
// costs per request. Two resilient-proxy gateways on bare node:http, each in
// its own process, side by side against one upstream process (1 KiB
// responses with `Cache-Control: max-age=60`, so every one is storable): one
// without `staleIfError`, one with `staleIfError: true` (the defaults: each
// response is teed, its policy decided by http-cache-semantics, and kept in a
// 32 MiB in-memory store). Requests cycle over 10,000 paths, so the store
// keeps replacing and evicting as it would in service. Interleaved rounds of
// autocannon, 50 keep-alive connections; medians reported. It measures the
// happy path only: a failure answered stale costs one store lookup.
//
//   npx tsx bench/stale-cost.ts            5 rounds of 4 s; writes bench/results/stale-cost.json
//   npx tsx bench/stale-cost.ts --smoke    1 round of 1 s, to prove it works

import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import autocannon from 'autocannon';
import { median, startServer } from './forked.js';
import { startRun, writeRecord } from './record.js';
import { createProxy, UpstreamRegistry } from 'resilient-proxy';

const [, , role, mode, upstreamUrl] = process.argv;
const PATHS = 10_000;

async function serve(): Promise<void> {
  const body = Buffer.alloc(1024, 'k');
  const server =
    mode === 'upstream'
      ? createServer((_req, res) => {
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length, 'cache-control': 'max-age=60' });
          res.end(body);
        })
      : createServer(
          createProxy({
            target: upstreamUrl ?? '',
            registry: new UpstreamRegistry(),
            ...(mode === 'stale' ? { staleIfError: true } : {}),
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
  const upstream = await start('upstream');
  const contenders = [
    { name: 'staleIfError off', ...(await start('plain', upstream.url)), rps: [] as number[], p99: [] as number[] },
    { name: 'staleIfError: true (every response kept)', ...(await start('stale', upstream.url)), rps: [] as number[], p99: [] as number[] },
  ];
  for (let round = 0; round < rounds; round += 1) {
    for (const contender of round % 2 === 0 ? contenders : [...contenders].reverse()) {
      let next = 0;
      const result = await autocannon({
        url: contender.url,
        connections: 50,
        duration: seconds,
        requests: [{ method: 'GET', setupRequest: (request) => ({ ...request, path: `/item/${String(next++ % PATHS)}` }) }],
      });
      if (result.non2xx > 0 || result.errors > 0) throw new Error(`${contender.name}: ${String(result.non2xx)} non-2xx answers, ${String(result.errors)} errors`);
      contender.rps.push(result.requests.average);
      contender.p99.push(result.latency.p99);
    }
  }
  for (const { child } of [upstream, ...contenders]) child.kill();
  writeRecord('stale-cost', smoke, {
    run: recording.finish(),
    rounds,
    seconds,
    connections: 50,
    paths: PATHS,
    rows: contenders.map((c) => ({ name: c.name, rps: Math.round(median(c.rps)), p99: median(c.p99) })),
  });
  const base = median(contenders[0]?.rps ?? []);
  console.log(
    `stale-on-error cost: 1 KiB storable responses over ${PATHS} paths, 50 connections, ${rounds} interleaved rounds of ${seconds} s, medians${smoke ? ' (smoke run: figures mean nothing)' : ''}`,
  );
  console.log('| gateway | req/s | p99 ms | vs off |');
  console.log('|---|---|---|---|');
  for (const contender of contenders) {
    console.log(`| ${contender.name} | ${Math.round(median(contender.rps))} | ${median(contender.p99)} | ${(median(contender.rps) / base).toFixed(2)} |`);
  }
}

if (role === 'serve') await serve();
else await main();

// `npx tsx bench/transform-bomb.ts`: the gateway's peak memory when an
// upstream answers a `transformResponse` request with decompression bombs.
// The gateway (bare node:http, `transformResponse` matching everything, the
// default `maxBytes` of 1 MiB) runs in its own process; the upstream here
// sends brotli bombs of 1 GiB and 4 GiB of zeros (each under 1 MiB on the
// wire), three at a time, after the same load of 1 MiB JSON bodies that are
// really transformed. Reported: the gateway's peak RSS
// (`process.resourceUsage().maxRSS`) after each, and what the clients got.
//
//   npx tsx bench/transform-bomb.ts            10 rounds of 3 bombs each size; writes
//                                              bench/results/transform-bomb.json
//   npx tsx bench/transform-bomb.ts --smoke    1 round, to prove it works (writes nothing)

import { once } from 'node:events';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { constants, createBrotliCompress } from 'node:zlib';
import { startServer } from './forked.js';
import { startRun, writeRecord } from './record.js';
import { createProxy, UpstreamRegistry } from 'resilient-proxy';

const [, , role, , upstreamUrl] = process.argv;

async function serve(): Promise<void> {
  let transformed = 0;
  const server = createServer(
    createProxy({
      target: upstreamUrl ?? '',
      registry: new UpstreamRegistry(),
      retry: false,
      transformResponse: {
        match: () => true,
        transform: (body) => {
          transformed += 1;
          return body;
        },
      },
    }),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  process.on('message', () => process.send?.({ maxRss: process.resourceUsage().maxRSS * 1024, transformed }));
  process.send?.((server.address() as AddressInfo).port);
}

/** `size` bytes of zeros, brotli-compressed at quality 1 (fast; still over 1000:1). */
async function brotliBomb(size: number): Promise<Buffer> {
  const compressor = createBrotliCompress({ params: { [constants.BROTLI_PARAM_QUALITY]: 1 } });
  const chunks: Buffer[] = [];
  compressor.on('data', (chunk: Buffer) => chunks.push(chunk));
  const zeros = Buffer.alloc(1024 * 1024);
  for (let written = 0; written < size; written += zeros.length) {
    if (!compressor.write(zeros)) await once(compressor, 'drain');
  }
  compressor.end();
  await once(compressor, 'end');
  return Buffer.concat(chunks);
}

function get(url: string): Promise<{ status: number; bytes: number; encoding: string | undefined }> {
  return new Promise((resolve, reject) => {
    request(url, { agent: false, headers: { 'accept-encoding': 'br' } }, (res) => {
      let bytes = 0;
      res.on('data', (chunk: Buffer) => (bytes += chunk.length));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, bytes, encoding: res.headers['content-encoding'] }));
    })
      .once('error', reject)
      .end();
  });
}

const MiB = 1024 * 1024;

async function main(): Promise<void> {
  const smoke = process.argv.includes('--smoke');
  const rounds = smoke ? 1 : 10;
  const recording = startRun();
  const rows: { path: string; wire: number; requests: number; untransformed: boolean; transformCalls: number; peakRssMiB: number }[] = [];
  const bodies = new Map<string, { body: Buffer; encoding?: string }>([
    ['/bomb-1g', { body: await brotliBomb(1024 * MiB), encoding: 'br' }],
    ['/bomb-4g', { body: await brotliBomb(4096 * MiB), encoding: 'br' }],
    ['/json-1m', { body: Buffer.from(JSON.stringify({ data: 'x'.repeat(MiB - 20) })) }],
  ]);
  const upstream = createServer((req, res) => {
    const { body, encoding } = bodies.get(req.url ?? '') ?? { body: Buffer.alloc(0) };
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length, ...(encoding && { 'content-encoding': encoding }) });
    res.end(body);
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const gateway = await startServer(import.meta.url, ['serve', 'gateway', `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`]);
  const figures = async (): Promise<{ maxRss: number; transformed: number }> => {
    gateway.child.send('figures');
    const [message] = (await once(gateway.child, 'message')) as [{ maxRss: number; transformed: number }];
    return message;
  };

  await get(`${gateway.url}/json-1m`);
  const start = await figures();
  rows.push({ path: 'start', wire: bodies.get('/json-1m')?.body.length ?? 0, requests: 1, untransformed: false, transformCalls: start.transformed, peakRssMiB: Math.round(start.maxRss / MiB) });
  console.log(`gateway peak RSS after one 1 MiB transform: ${(start.maxRss / MiB).toFixed(0)} MiB`);
  // The same load of real transforms at maxBytes first: what a bomb must not exceed.
  for (let round = 0; round < rounds; round += 1) await Promise.all([get(`${gateway.url}/json-1m`), get(`${gateway.url}/json-1m`), get(`${gateway.url}/json-1m`)]);
  const before = await figures();
  rows.push({ path: '/json-1m', wire: bodies.get('/json-1m')?.body.length ?? 0, requests: rounds * 3, untransformed: false, transformCalls: before.transformed - start.transformed, peakRssMiB: Math.round(before.maxRss / MiB) });
  console.log(`/json-1m: ${rounds * 3} real 1 MiB transforms (3 at a time): transform calls ${before.transformed - start.transformed}; gateway peak RSS ${(before.maxRss / MiB).toFixed(0)} MiB`);
  for (const path of ['/bomb-1g', '/bomb-4g']) {
    const sent = bodies.get(path)?.body.length ?? 0;
    const answers = [];
    for (let round = 0; round < rounds; round += 1) answers.push(...(await Promise.all([get(`${gateway.url}${path}`), get(`${gateway.url}${path}`), get(`${gateway.url}${path}`)])));
    const untouched = answers.every((answer) => answer.status === 200 && answer.bytes === sent && answer.encoding === 'br');
    const after = await figures();
    rows.push({ path, wire: sent, requests: answers.length, untransformed: untouched, transformCalls: after.transformed - before.transformed, peakRssMiB: Math.round(after.maxRss / MiB) });
    console.log(
      `${path}: ${sent} B on the wire, ${answers.length} requests (3 at a time): ${untouched ? 'every client got the original bytes' : 'SOME CLIENT GOT OTHER BYTES'}; ` +
        `transform calls ${after.transformed - before.transformed}; gateway peak RSS ${(after.maxRss / MiB).toFixed(0)} MiB`,
    );
  }
  gateway.child.kill();
  upstream.close();
  writeRecord('transform-bomb', smoke, { run: recording.finish(), maxBytes: MiB, concurrency: 3, rows });
}

if (role === 'serve') void serve();
else await main();

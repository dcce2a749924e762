// `npx tsx bench/stale-memory.ts`: whether the stale store's `maxBytes` bounds
// the memory it really holds. An upstream process answers every path with a
// storable 100-byte response carrying `headers` extra header fields; a proxy
// in a process of its own (started with --expose-gc) fetches distinct paths
// until its store has filled and evicted, then collects garbage, clears the
// store and collects again: the heap and ArrayBuffer memory the clearing gave
// back is what the store held, reported next to what it accounts for.
// Clients choose URLs, so this is what one client can make the proxy hold.
//
//   npx tsx bench/stale-memory.ts            maxBytes 32 MiB; 1, 100 and 1,400 header fields;
//                                            writes bench/results/stale-memory.json
//   npx tsx bench/stale-memory.ts --smoke    maxBytes 2 MiB, to prove it works

import { once } from 'node:events';
import { fork } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { createProxy, MemoryStaleStore, UpstreamRegistry } from 'resilient-proxy';
import { startServer } from './forked.js';
import { startRun, writeRecord } from './record.js';

const [, , role, arg, upstreamUrl] = process.argv;

/**
 * The upstream: `/<headers>/<n>` answers with that many extra header fields,
 * `/<headers>u/<n>` with names and values of its own for each `n` (no string
 * shared between entries: the worst case for memory).
 */
async function serveUpstream(): Promise<void> {
  const body = Buffer.alloc(100, 'k');
  const server = createServer((req, res) => {
    const [, shape = '0', n = ''] = req.url?.split('/') ?? [];
    const count = Number.parseInt(shape, 10);
    const unique = shape.endsWith('u');
    const headers: [string, string][] = [
      ['content-type', 'application/octet-stream'],
      ['cache-control', 'max-age=600'],
    ];
    // Short enough for 1,400 fields in undici's 16 KiB response head.
    for (let i = 0; i < count; i += 1) headers.push([unique ? (Number(n) * count + i).toString(36) : `h${String(i)}`, 'v']);
    res.writeHead(200, headers.flat());
    res.end(body);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  process.send?.((server.address() as AddressInfo).port);
}

interface Measured {
  readonly headers: string;
  readonly entries: number;
  readonly requests: number;
  readonly accounted: number;
  readonly heap: number;
}

/** One measurement, in this (forked, --expose-gc) process. */
async function measure(headers: string, maxBytes: number): Promise<Measured> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run with --expose-gc');
  const store = new MemoryStaleStore({ maxBytes });
  const proxy = createProxy({ target: upstreamUrl ?? '', registry: new UpstreamRegistry(), retry: false, staleIfError: { store, maxBytes } });
  const server: Server = createServer(proxy).listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${String((server.address() as AddressInfo).port)}`;
  const agent = new Agent({ connections: 16 });
  const get = async (n: number): Promise<void> => {
    const { body } = await request(`${url}/${headers}/${String(n)}`, { dispatcher: agent });
    await body.dump();
  };
  let next = 0;
  let evicted = false;
  // Fill the store, then as many again: eviction keeps it at its bound.
  const client = async (): Promise<void> => {
    while (!evicted || next < 2 * store.size + 100) {
      await get(next);
      next += 1;
      if (store.bytes > maxBytes * 0.9) evicted = true;
    }
  };
  await Promise.all(Array.from({ length: 16 }, client));
  await agent.close();
  gc();
  const after = process.memoryUsage();
  const entries = store.size;
  const accounted = store.bytes;
  // What the store holds is what clearing it gives back: the rest is the
  // process's own growth (compiled code, pools) that a store of any size brings.
  store.clear();
  gc();
  const cleared = process.memoryUsage();
  const heap = after.heapUsed - cleared.heapUsed + (after.arrayBuffers - cleared.arrayBuffers);
  const result = { headers, entries, requests: next, accounted, heap };
  server.close();
  await proxy.close();
  return result;
}

async function main(): Promise<void> {
  const smoke = process.argv.includes('--smoke');
  const maxBytes = (smoke ? 2 : 32) * 1024 * 1024;
  const recording = startRun();
  const upstream = await startServer(import.meta.url, ['upstream']);
  const rows: Measured[] = [];
  const mib = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);
  console.log(`stale store memory: maxBytes ${mib(maxBytes)} MiB, 100-byte bodies, distinct URLs until evicting`);
  console.log('| header fields | entries kept | accounted (MiB) | heap + ArrayBuffers held (MiB) | real / accounted |');
  console.log('|---|---|---|---|---|');
  try {
    for (const headers of ['1', '100', '100u', '1400', '1400u']) {
      const child = fork(fileURLToPath(import.meta.url), ['measure', headers, upstream.url, String(maxBytes)], { execArgv: ['--expose-gc', '--import', 'tsx'] });
      const [row] = (await once(child, 'message')) as [Measured];
      rows.push(row);
      console.log(`| ${row.headers.replace(/u$/, ', each unique')} | ${String(row.entries)} | ${mib(row.accounted)} | ${mib(row.heap)} | ${(row.heap / row.accounted).toFixed(2)} |`);
      await once(child, 'exit');
    }
  } finally {
    upstream.child.kill();
  }
  writeRecord('stale-memory', smoke, { run: recording.finish(), maxBytes, bodyBytes: 100, rows });
  const over = rows.filter((row) => row.heap > maxBytes);
  if (over.length > 0) {
    console.error(`the store held more than maxBytes with ${over.map((row) => row.headers).join(', ')} header fields`);
    process.exitCode = 1;
  }
}

if (role === 'upstream') await serveUpstream();
else if (role === 'measure') process.send?.(await measure(arg ?? '1', Number(process.argv[5])));
else await main();

// `npx tsx bench/websocket.ts`: WebSocket messages per second and p99 round
// trip through resilient-proxy (node:http, `proxy.upgrade`),
// http-proxy-middleware (`ws: true`, on Express) and @fastify/http-proxy
// (`websocket: true`), each in its own process, side by side against one
// echo upstream process. 20 connections, each sending one message and
// waiting for its echo in a loop; interleaved rounds; medians reported. Small
// (32 B) and 64 KiB messages. Imports resilient-proxy by name (dist/: run
// `npm run build` first).
//
//   npx tsx bench/websocket.ts            5 rounds of 4 s per size (ROUNDS, SECONDS);
//                                         writes bench/results/websocket.json
//   npx tsx bench/websocket.ts --smoke    1 round of 1 s, to prove it works

import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import fastifyHttpProxy from '@fastify/http-proxy';
import express from 'express';
import Fastify from 'fastify';
import { createProxyMiddleware } from 'http-proxy-middleware';
import { createProxy, UpstreamRegistry } from 'resilient-proxy';
import { WebSocket, WebSocketServer } from 'ws';
import { startRun, writeRecord } from './record.js';
import { median, startServer } from './forked.js';

const [, , role, kind, target] = process.argv;
const CONNECTIONS = 20;

async function serve(): Promise<void> {
  let port: number;
  if (kind === 'upstream') {
    const server = createServer();
    new WebSocketServer({ server }).on('connection', (socket) => socket.on('message', (data, binary) => socket.send(data, { binary })));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  } else if (kind === 'resilient-proxy') {
    const proxy = createProxy({ target: target ?? '', registry: new UpstreamRegistry() });
    const server = createServer(proxy);
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void proxy.upgrade(req, socket, head));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  } else if (kind === 'http-proxy-middleware') {
    const app = express();
    const middleware = createProxyMiddleware({ target, ws: true });
    app.use(middleware);
    const server = app.listen(0, '127.0.0.1');
    server.on('upgrade', middleware.upgrade);
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  } else {
    const app = Fastify();
    await app.register(fastifyHttpProxy, { upstream: target ?? '', websocket: true });
    port = Number(new URL(await app.listen({ port: 0, host: '127.0.0.1' })).port);
  }
  process.send?.(port);
}

/** Runs CONNECTIONS echo loops for `seconds`; returns messages per second and the p99 round trip in ms. */
async function load(url: string, size: number, seconds: number): Promise<{ rate: number; p99: number }> {
  const payload = Buffer.alloc(size, 'w');
  const sockets = await Promise.all(
    Array.from({ length: CONNECTIONS }, () => {
      const socket = new WebSocket(url);
      return new Promise<WebSocket>((resolve, reject) => {
        socket.once('open', () => resolve(socket));
        socket.once('error', reject);
      });
    }),
  );
  const times: number[] = [];
  const until = performance.now() + seconds * 1000;
  await Promise.all(
    sockets.map(async (socket) => {
      while (performance.now() < until) {
        const sent = performance.now();
        socket.send(payload);
        await once(socket, 'message');
        times.push(performance.now() - sent);
      }
    }),
  );
  for (const socket of sockets) socket.terminate();
  times.sort((a, b) => a - b);
  return { rate: times.length / seconds, p99: times[Math.floor(times.length * 0.99)] ?? 0 };
}

const start = (kind: string, target = ''): ReturnType<typeof startServer> => startServer(import.meta.url, ['serve', kind, target], 'ws');

async function main(): Promise<void> {
  const smoke = process.argv.includes('--smoke');
  const rounds = smoke ? 1 : Number(process.env.ROUNDS ?? 5);
  const seconds = smoke ? 1 : Number(process.env.SECONDS ?? 4);
  const recording = startRun();
  const rows: { size: number; name: string; rate: number; p99: number }[] = [];
  const upstream = await start('upstream');
  const httpUpstream = upstream.url.replace('ws://', 'http://');
  const contenders = await Promise.all(['resilient-proxy', 'http-proxy-middleware', '@fastify/http-proxy'].map(async (name) => ({ name, ...(await start(name, httpUpstream)) })));
  console.log(`WebSocket echo, ${CONNECTIONS} connections, ${rounds} interleaved rounds of ${seconds} s, medians${smoke ? ' (smoke run: figures mean nothing)' : ''}`);
  console.log('| message | contender | messages/s | p99 ms | vs resilient-proxy |');
  console.log('|---|---|---|---|---|');
  for (const size of [32, 64 * 1024]) {
    const figures = new Map(contenders.map((c) => [c.name, { rate: [] as number[], p99: [] as number[] }]));
    for (let round = 0; round < rounds; round += 1) {
      for (const contender of round % 2 === 0 ? contenders : [...contenders].reverse()) {
        const result = await load(contender.url, size, seconds);
        figures.get(contender.name)?.rate.push(result.rate);
        figures.get(contender.name)?.p99.push(result.p99);
      }
    }
    const base = median(figures.get('resilient-proxy')?.rate ?? []);
    for (const [name, { rate, p99 }] of figures) {
      rows.push({ size, name, rate: Math.round(median(rate)), p99: Number(median(p99).toFixed(1)) });
      console.log(`| ${size === 32 ? '32 B' : '64 KiB'} | ${name} | ${Math.round(median(rate))} | ${median(p99).toFixed(1)} | ${(median(rate) / base).toFixed(2)} |`);
    }
  }
  for (const { child } of [upstream, ...contenders]) child.kill();
  writeRecord('websocket', smoke, { run: recording.finish(), rounds, seconds, connections: CONNECTIONS, rows });
}

if (role === 'serve') await serve();
else await main();

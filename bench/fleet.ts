// `npx tsx bench/fleet.ts`: a fleet of N independent proxy instances (each
// with its own registry, as separate processes would have) in front of one
// group of three hosts, during an outage of one host and of every host. It
// reports the upstream load as a multiple of the client load: what the retry
// budget, the breaker and outlier detection add up to when their state is per
// instance (DESIGN.md §15). The client load is fixed and shared across the
// fleet, so a larger N means fewer requests per instance.
//
//   npx tsx bench/fleet.ts            N = 1, 10, 50; 10 s per run; writes
//                                     bench/results/fleet.json, which
//                                     `npm run bench:docs` renders into the README
//   npx tsx bench/fleet.ts --smoke    a second per run, to prove it works (writes nothing)

import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { Agent, createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createProxy, UpstreamRegistry, type ProxyOptions } from 'resilient-proxy';

const smoke = process.argv.includes('--smoke');
const SECONDS = smoke ? 1 : 10;
/** Client requests per second, across the whole fleet. */
const RATE = 200;
const FLEETS = smoke ? [1, 10] : [1, 10, 50];

interface Replica {
  readonly server: Server;
  readonly url: string;
  requests: number;
  failing: boolean;
}

async function replica(): Promise<Replica> {
  const server = createServer();
  const state: Replica = { server, url: '', requests: 0, failing: false };
  server.on('request', (req, res) => {
    state.requests += 1;
    req.resume();
    const status = state.failing ? 503 : 200;
    res.writeHead(status, { 'content-type': 'text/plain', 'content-length': 2 });
    res.end(status === 200 ? 'ok' : 'no');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return Object.assign(state, { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
}

function get(agent: Agent, port: number): Promise<number> {
  return new Promise((resolve) => {
    request({ host: '127.0.0.1', port, path: '/x', agent }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
    })
      .once('error', () => resolve(0))
      .end();
  });
}

interface Run {
  readonly fleet: number;
  readonly outage: 'one host' | 'every host';
  readonly config: string;
  readonly clientRequests: number;
  readonly upstreamRequests: number;
  readonly ratio: number;
  readonly clientErrors: number;
}

async function run(fleet: number, outage: Run['outage'], config: string, options: Pick<ProxyOptions, 'breaker' | 'retry'>): Promise<Run> {
  const replicas = await Promise.all([replica(), replica(), replica()]);
  for (const [index, host] of replicas.entries()) host.failing = outage === 'every host' || index === 0;
  const gateways = await Promise.all(
    Array.from({ length: fleet }, async () => {
      const registry = new UpstreamRegistry();
      const proxy = createProxy({ target: replicas.map((r) => r.url), name: 'orders', registry, ...options });
      const server = createServer(proxy).listen(0, '127.0.0.1');
      await once(server, 'listening');
      return { registry, proxy, server, port: (server.address() as AddressInfo).port, agent: new Agent({ keepAlive: true }) };
    }),
  );
  const pending: Promise<number>[] = [];
  const total = RATE * SECONDS;
  let sent = 0;
  // A fixed rate, spread round-robin over the fleet: every 10 ms, RATE/100 requests.
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      for (let i = 0; i < RATE / 100 && sent < total; i += 1) {
        const gateway = gateways[sent % fleet];
        if (gateway !== undefined) pending.push(get(gateway.agent, gateway.port));
        sent += 1;
      }
      if (sent >= total) {
        clearInterval(tick);
        resolve();
      }
    }, 10);
  });
  const statuses = await Promise.all(pending);
  const upstreamRequests = replicas.reduce((sum, r) => sum + r.requests, 0);
  for (const gateway of gateways) {
    gateway.agent.destroy();
    gateway.server.closeAllConnections();
    gateway.server.close();
    await gateway.proxy.close();
    gateway.registry.close();
  }
  for (const host of replicas) {
    host.server.closeAllConnections();
    host.server.close();
  }
  return {
    fleet,
    outage,
    config,
    clientRequests: total,
    upstreamRequests,
    ratio: upstreamRequests / total,
    clientErrors: statuses.filter((status) => status !== 200).length,
  };
}

const configs: [string, Pick<ProxyOptions, 'breaker' | 'retry'>][] = [
  ['defaults', {}],
  ['breaker off (budget only)', { breaker: false }],
];
const runs: Run[] = [];
for (const outage of ['one host', 'every host'] as const) {
  for (const [config, options] of configs) {
    for (const fleet of FLEETS) runs.push(await run(fleet, outage, config, options));
  }
}

if (!smoke) {
  const file = new URL('results/fleet.json', import.meta.url);
  writeFileSync(file, `${JSON.stringify({ date: new Date().toISOString().slice(0, 10), node: process.version, seconds: SECONDS, rate: RATE, runs }, null, 2)}\n`);
}
{
  console.log(`fleet simulation: ${RATE} client GET/s for ${SECONDS} s across N instances, group of 3 hosts, retries 2${smoke ? ' (smoke run: figures mean nothing)' : ''}`);
  console.log('| outage | config | N | client requests | upstream requests | upstream / client | client errors |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of runs) {
    console.log(`| ${r.outage} | ${r.config} | ${r.fleet} | ${r.clientRequests} | ${r.upstreamRequests} | ${r.ratio.toFixed(2)}× | ${r.clientErrors} |`);
  }
}

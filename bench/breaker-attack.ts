// `npx tsx bench/breaker-attack.ts`: can one client take a service down
// through the circuit breaker? Legitimate clients send GET /ok at a steady
// rate; an attacker opens with a burst of 10 GET /fail (the upstream answers
// 503; issue 19 opened the circuit with 6 to 10), then sends them at 10 % or
// 50 % of that rate, and every time it is refused with `Retry-After` it sends a
// GET /hang (an upstream request that never answers) at the very moment the
// circuit half-opens, to win the probe (issue 19's attack). The proxy runs
// with its default options. Reported: the legitimate requests that got their
// 200, and how long the circuit was not closed. A third scenario has a real
// 8 s outage of /ok first (the circuit opens, as it should) and measures how
// the legitimate traffic fares once the upstream is back, while the attacker
// tries to hold the circuit open with timed hanging probes. Imports
// resilient-proxy by name (dist/: run `npm run build` first).
//
//   npx tsx bench/breaker-attack.ts            30 s per scenario, 20 legitimate requests/s
//   npx tsx bench/breaker-attack.ts --smoke    2 s per scenario, to prove it works
//   npx tsx bench/breaker-attack.ts --json     the figures as JSON
//   npx tsx bench/breaker-attack.ts --before /tmp/abdcc12/dist/index.js
//                                              also runs every scenario on that build
//                                              (the release before the fix), side by side
//
// A full run writes bench/results/breaker-attack.json.

import { once } from 'node:events';
import { Agent, createServer, request, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import * as current from 'resilient-proxy';
import type { BreakerState } from 'resilient-proxy';
import { startRun, writeRecord } from './record.js';
import type { AttackResult } from './sections/breaker-attack.js';

const smoke = process.argv.includes('--smoke');
const json = process.argv.includes('--json');
const beforeAt = process.argv.indexOf('--before');
const beforePath = beforeAt === -1 ? null : process.argv[beforeAt + 1];
if (beforePath === undefined) throw new TypeError('--before needs the path of a build (its dist/index.js)');
const SECONDS = smoke ? 2 : 30;
const OUTAGE_SECONDS = smoke ? 0.5 : 8;
const LEGIT_RATE = 20;
const BURST = 10;

interface Scenario {
  readonly name: string;
  /** The attacker's rate as a share of the legitimate rate. */
  readonly attackerShare: number;
  /** Seconds /ok answers 503 for everyone at the start (a real outage). */
  readonly outage: number;
}

type Result = AttackResult;

function send(url: string, agent: Agent): Promise<{ status: number; retryAfter: string | undefined }> {
  return new Promise((resolve) => {
    const req = request(url, { agent }, (res) => {
      res.resume();
      res.once('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] }));
      res.once('error', () => resolve({ status: 0, retryAfter: undefined }));
    });
    req.once('error', () => resolve({ status: 0, retryAfter: undefined }));
    req.end();
  });
}

async function run(scenario: Scenario, { createProxy, UpstreamRegistry }: Pick<typeof current, 'createProxy' | 'UpstreamRegistry'>): Promise<Result> {
  let down = scenario.outage > 0;
  const held = new Set<ServerResponse>();
  const upstream = createServer((req, res) => {
    if (req.url === '/hang') {
      held.add(res);
      res.once('close', () => held.delete(res));
      return;
    }
    if (req.url === '/fail' || down) {
      res.writeHead(503, { 'content-length': 0 }).end();
      return;
    }
    res.writeHead(200, { 'content-length': 2 }).end('ok');
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');

  let state = 'closed' as BreakerState;
  let notClosedSince = 0;
  let notClosedMs = 0;
  let opened = 0;
  const registry = new UpstreamRegistry();
  const proxy = createProxy({
    target: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
    registry,
    hooks: {
      onBreakerStateChange: (change) => {
        if (change.to === 'open') opened += 1;
        if (change.from === 'closed') notClosedSince = performance.now();
        if (change.to === 'closed') notClosedMs += performance.now() - notClosedSince;
        state = change.to;
      },
    },
  });
  const server = createServer(proxy);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const legitAgent = new Agent({ keepAlive: true });
  const attackerAgent = new Agent({ keepAlive: true });
  const started = performance.now();
  const outageEnd = started + scenario.outage * 1000;
  if (scenario.outage > 0) setTimeout(() => (down = false), scenario.outage * 1000);

  let legitimate = 0;
  let succeeded = 0;
  let afterLegitimate = 0;
  let afterSucceeded = 0;
  let attackerRequests = 0;
  let attackerProbes = 0;
  const inFlight: Promise<unknown>[] = [];
  const probeTimes = new Set<number>();
  const timers: NodeJS.Timeout[] = [];

  const legit = (): void => {
    legitimate += 1;
    const after = performance.now() >= outageEnd;
    if (after) afterLegitimate += 1;
    inFlight.push(
      send(`${base}/ok`, legitAgent).then(({ status }) => {
        if (status !== 200) return;
        succeeded += 1;
        if (after) afterSucceeded += 1;
      }),
    );
  };
  const attack = (): void => {
    attackerRequests += 1;
    void send(`${base}/fail`, attackerAgent).then(({ status, retryAfter }) => {
      if (status === 0 || retryAfter === undefined) return;
      // Refused: be first through when the circuit half-opens, with a request that never answers.
      const at = Math.round(performance.now() + Number(retryAfter) * 1000);
      const slot = Math.round(at / 1000);
      if (probeTimes.has(slot)) return;
      probeTimes.add(slot);
      timers.push(
        setTimeout(() => {
          attackerProbes += 1;
          void send(`${base}/hang`, attackerAgent);
        }, at - performance.now()),
      );
    });
  };

  for (let i = 0; i < BURST; i += 1) attack();
  const legitTimer = setInterval(legit, 1000 / LEGIT_RATE);
  const attackTimer = setInterval(attack, 1000 / (LEGIT_RATE * scenario.attackerShare));
  await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000));
  clearInterval(legitTimer);
  clearInterval(attackTimer);
  for (const timer of timers) clearTimeout(timer);
  await Promise.all(inFlight);
  if (state !== 'closed') notClosedMs += performance.now() - notClosedSince;

  for (const res of held) res.destroy();
  legitAgent.destroy();
  attackerAgent.destroy();
  await proxy.close();
  registry.close();
  server.closeAllConnections();
  upstream.closeAllConnections();
  server.close();
  upstream.close();

  const percent = (part: number, whole: number): number => (whole === 0 ? 0 : Math.round((part / whole) * 1000) / 10);
  return {
    scenario: scenario.name,
    legitimate,
    succeeded,
    successPercent: percent(succeeded, legitimate),
    afterOutageLegitimate: afterLegitimate,
    afterOutageSucceeded: afterSucceeded,
    afterOutagePercent: percent(afterSucceeded, afterLegitimate),
    attackerRequests,
    attackerProbes,
    notClosedSeconds: Math.round(notClosedMs / 100) / 10,
    opened,
  };
}

const scenarios: Scenario[] = [
  { name: 'attacker at 10 % of the legitimate rate', attackerShare: 0.1, outage: 0 },
  { name: 'attacker at 50 % of the legitimate rate', attackerShare: 0.5, outage: 0 },
  { name: `${OUTAGE_SECONDS} s outage, then attacker at 10 % holding probes`, attackerShare: 0.1, outage: OUTAGE_SECONDS },
];
const recording = startRun();
const before = beforePath === null ? null : ((await import(pathToFileURL(beforePath).href)) as typeof current);
const results: Result[] = [];
const beforeResults: Result[] = [];
for (const scenario of scenarios) {
  results.push(await run(scenario, current));
  if (before !== null) beforeResults.push(await run(scenario, before));
}
writeRecord('breaker-attack', smoke, {
  run: recording.finish(),
  legitimateRate: LEGIT_RATE,
  seconds: SECONDS,
  outageSeconds: OUTAGE_SECONDS,
  burst: BURST,
  before: before === null ? null : { build: beforePath, results: beforeResults },
  results,
});

const table = (title: string, rows: readonly Result[]): void => {
  console.log(`${title}\n`);
  console.log('| scenario | legitimate 200s | success | after the outage | attacker requests (timed probes) | circuit not closed | times opened |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.scenario} | ${r.succeeded} / ${r.legitimate} | ${r.successPercent} % | ${r.afterOutageSucceeded} / ${r.afterOutageLegitimate} (${r.afterOutagePercent} %) | ${r.attackerRequests} (${r.attackerProbes}) | ${r.notClosedSeconds} s | ${r.opened} |`);
  }
};
if (json) console.log(JSON.stringify({ results, before: beforeResults }, null, 2));
else {
  table(`breaker under attack: ${LEGIT_RATE} legitimate GET/s for ${SECONDS} s per scenario, an opening burst of ${BURST} failing requests, default options (Node ${process.version})`, results);
  if (before !== null) table(`\nthe same on ${beforePath ?? ''}`, beforeResults);
}

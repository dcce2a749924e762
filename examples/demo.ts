// `npm run demo`: starts a misbehaving upstream and an Express gateway on
// loopback, sends one request per failure class through the gateway, and
// prints what the client got. Every row is answered by the same contract.
// Below the table, notes explain the rows that surprise people (one try where
// retries are on, a 502 where RFC 9209 says 503).
//
// Run: npm install && npm run demo

import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Dispatcher } from 'undici';
import {
  createProxy,
  DEFAULTS,
  rfc9209Status,
  UpstreamRegistry,
  type BreakerOptions,
  type FailureEvent,
  type ResilientProxy,
  type StatusOption,
} from 'resilient-proxy';
import {
  connectHangDispatcher,
  dnsFailureDispatcher,
  faults,
  refusedUrl,
  startFaultUpstream,
  unreachableDispatcher,
  type Behaviour,
  type FaultUpstream,
} from 'resilient-proxy/testing';

interface Scenario {
  readonly path: string;
  readonly what: string;
  readonly target: () => Promise<string>;
  readonly dispatcher?: () => Dispatcher;
  readonly method?: string;
  readonly breaker?: Partial<BreakerOptions>;
  readonly status?: StatusOption;
  /** A request sent first, to trip the breaker or fill the upstream's capacity. */
  readonly prime?: 'await' | 'in-flight';
}

const timeout = { connect: 300, response: 300, idle: 300 };
const tls = {
  key: readFileSync(new URL('../test/fixtures/self-signed.key', import.meta.url)),
  cert: readFileSync(new URL('../test/fixtures/self-signed.crt', import.meta.url)),
};
const upstreams: FaultUpstream[] = [];
const dispatchers: Dispatcher[] = [];
const proxies: ResilientProxy[] = [];

async function misbehaving(behaviour: Behaviour, options: { tls?: typeof tls } = {}): Promise<string> {
  const upstream = await startFaultUpstream({ fallback: behaviour, ...options });
  upstreams.push(upstream);
  return upstream.url;
}

function owned(dispatcher: Dispatcher): Dispatcher {
  dispatchers.push(dispatcher);
  return dispatcher;
}

async function flaky(): Promise<string> {
  const upstream = await startFaultUpstream({ fallback: faults.respond(200, 'hello') });
  upstream.enqueue(faults.resetBeforeHeaders(), faults.status(503));
  upstreams.push(upstream);
  return upstream.url;
}

const nowhere = (): Promise<string> => Promise.resolve('http://orders.internal:8080');

const scenarios: Scenario[] = [
  { path: '/ok', what: 'healthy upstream', target: () => misbehaving(faults.respond(200, 'hello')) },
  { path: '/flaky', what: 'fails twice, then answers', target: () => flaky() },
  { path: '/dns', what: 'name does not resolve', target: nowhere, dispatcher: () => dnsFailureDispatcher('ENOTFOUND') },
  { path: '/unreachable', what: 'no route to host', target: nowhere, dispatcher: () => unreachableDispatcher('EHOSTUNREACH') },
  { path: '/refused', what: 'port closed', target: () => refusedUrl() },
  { path: '/connect-timeout', what: 'connect never completes', target: nowhere, dispatcher: () => connectHangDispatcher() },
  { path: '/tls', what: 'self-signed certificate', target: () => misbehaving(faults.respond(), { tls }) },
  { path: '/reset', what: 'reset before headers', target: () => misbehaving(faults.resetBeforeHeaders()) },
  { path: '/hang', what: 'never answers', target: () => misbehaving(faults.hang()) },
  { path: '/malformed', what: 'malformed status line', target: () => misbehaving(faults.malformedStatusLine()) },
  { path: '/unavailable', what: 'answers 503 Retry-After: 5', target: () => misbehaving(faults.status(503, { retryAfter: 5 })) },
  { path: '/mid-body', what: 'closes mid-body', target: () => misbehaving(faults.closeMidBody(4096, 100)) },
  { path: '/stall', what: 'stalls mid-body', target: () => misbehaving(faults.headersThenStall(4096, 100)) },
  { path: '/consumed', what: 'body eaten by middleware', target: () => misbehaving(faults.respond()), method: 'POST' },
  {
    path: '/circuit',
    what: 'keeps failing: circuit opens',
    target: () => misbehaving(faults.status(503)),
    breaker: { volumeThreshold: 3, resetTimeout: 30_000 },
    prime: 'await',
  },
  {
    path: '/circuit-rfc9209',
    what: 'same, status: rfc9209Status',
    target: () => misbehaving(faults.status(503)),
    breaker: { volumeThreshold: 3, resetTimeout: 30_000 },
    status: rfc9209Status,
    prime: 'await',
  },
  {
    path: '/overloaded',
    what: 'slow, at capacity (1)',
    target: () => misbehaving(faults.hang()),
    breaker: { capacity: 1 },
    prime: 'in-flight',
  },
];

interface Row {
  what: string;
  status: string;
  attempts: string;
  code: string;
  proxyStatus: string;
  ending: string;
  ms: string;
}

interface Answer {
  status: string;
  code: string;
  attempts: number | null;
  proxyStatus: string;
  ending: string;
  retryAfter: string | undefined;
}

function call(base: string, scenario: Scenario): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${scenario.path}/items`, { method: scenario.method ?? 'GET', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      const done = (ending: string) => {
        let code = '-';
        let attempts: number | null = null;
        if (res.headers['content-type'] === 'application/problem+json') ({ code, attempts } = JSON.parse(body) as { code: string; attempts: number });
        resolve({
          status: String(res.statusCode),
          code,
          attempts,
          proxyStatus: String(res.headers['proxy-status'] ?? '-'),
          ending,
          retryAfter: res.headers['retry-after'],
        });
      };
      res.once('end', () => done(res.complete ? 'complete' : 'cut off'));
      res.once('aborted', () => done('cut off'));
      res.once('error', () => undefined);
    });
    req.once('error', reject);
    if (scenario.method === 'POST') {
      req.setHeader('content-type', 'application/octet-stream');
      req.end('payload');
    } else req.end();
  });
}

async function main(): Promise<void> {
  const app = express();
  const registry = new UpstreamRegistry();
  const failures = new Map<string, FailureEvent>();
  const retries = new Map<string, number>();
  // A middleware that reads request bodies and keeps nothing: the proxy must
  // fail clearly instead of waiting forever for a body that is gone.
  app.use('/consumed', (req, _res, next) => {
    req.resume();
    req.once('end', () => next());
  });
  for (const scenario of scenarios) {
    const proxy = createProxy({
      target: await scenario.target(),
      // One upstream name per scenario: the breaker is shared by name.
      name: scenario.path.slice(1),
      timeout,
      registry,
      ...(scenario.breaker && { breaker: scenario.breaker }),
      ...(scenario.status !== undefined && { status: scenario.status }),
      ...(scenario.dispatcher && { dispatcher: owned(scenario.dispatcher()) }),
      hooks: {
        onFailure: (event) => failures.set(scenario.path, event),
        onRetry: () => retries.set(scenario.path, (retries.get(scenario.path) ?? 0) + 1),
      },
    });
    proxies.push(proxy);
    app.use(scenario.path, proxy);
  }
  const server: Server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const rows: Row[] = [];
  const answers = new Map<string, Answer>();
  const primed: Promise<unknown>[] = [];
  for (const scenario of scenarios) {
    if (scenario.prime === 'await') await call(base, scenario);
    if (scenario.prime === 'in-flight') {
      const pending = call(base, scenario);
      primed.push(pending);
      await new Promise((resolve) => setImmediate(resolve));
    }
    retries.delete(scenario.path);
    failures.delete(scenario.path);
    const started = performance.now();
    const result = await call(base, scenario);
    const ms = (performance.now() - started).toFixed(0);
    // After headers went out the code only reaches the hook; the client sees a cut.
    const hooked = failures.get(scenario.path);
    const code = result.code !== '-' ? result.code : hooked ? `${hooked.code} (hook)` : '-';
    // The error body says how many attempts were made; for a response that
    // went through, count the retries the hook saw.
    const attempts = String(result.attempts ?? (retries.get(scenario.path) ?? 0) + 1);
    const { status, proxyStatus, ending } = result;
    answers.set(scenario.path, { ...result, attempts: Number(attempts) });
    rows.push({ what: scenario.what, status, attempts, code, proxyStatus, ending, ms });
  }

  // The gateway is closed before anything is printed: the output names no
  // address, since none would answer by the time you read it.
  await Promise.all(primed);
  server.closeAllConnections();
  server.close();
  registry.close();
  await Promise.all([...proxies.map((p) => p.close()), ...upstreams.map((u) => u.close()), ...dispatchers.map((d) => d.destroy())]);

  const header: Row = { what: 'upstream fault', status: 'status', attempts: 'tries', code: 'code', proxyStatus: 'Proxy-Status', ending: 'body', ms: 'ms' };
  const keys = Object.keys(header) as (keyof Row)[];
  const width = Object.fromEntries(keys.map((k) => [k, Math.max(...[header, ...rows].map((r) => r[k].length))])) as Record<keyof Row, number>;
  const line = (row: Row) => keys.map((k) => (k === 'ms' ? row[k].padStart(width[k]) : row[k].padEnd(width[k]))).join('  ');
  console.log('\nresilient-proxy demo: one request per failure class, through an Express gateway on loopback\n');
  console.log(line(header));
  console.log(keys.map((k) => '-'.repeat(width[k])).join('  '));
  for (const row of rows) console.log(line(row));
  console.log(`\nTimeouts in this demo: connect ${timeout.connect} ms, response ${timeout.response} ms, idle ${timeout.idle} ms.`);
  console.log('GETs are retried up to twice when that is safe. TLS failures, broken bodies and a response timeout on');
  console.log('the only host are not retried.');
  const explained = notes(answers);
  if (explained.length > 0) {
    console.log('\nWhy some rows look the way they do:');
    for (const note of explained) console.log(`- ${note}`);
  }
}

/**
 * Notes on the rows people ask about, each printed only when the row shows
 * what it explains, so a note can never contradict the table above it.
 */
function notes(answers: Map<string, Answer>): string[] {
  const out: string[] = [];
  const wrap = (text: string): string => text.replace(/(.{1,100})(?: |$)/g, '$1\n  ').trimEnd();
  const unavailable = answers.get('/unavailable');
  if (unavailable?.attempts === 1 && unavailable.code === 'UPSTREAM_STATUS' && unavailable.retryAfter !== undefined) {
    out.push(
      wrap(
        `"answers 503 Retry-After: 5", 1 try: the upstream asked for a wait of ${unavailable.retryAfter} s, longer than ` +
          `retry.maxDelay (${DEFAULTS.retry.maxDelay} ms), and no timeout.total is set, so the proxy does not wait at all. ` +
          `It answers at once and passes Retry-After: ${unavailable.retryAfter} on to the client.`,
      ),
    );
  }
  const hang = answers.get('/hang');
  if (hang?.attempts === 1 && hang.code === 'UPSTREAM_RESPONSE_TIMEOUT') {
    out.push(
      wrap(
        '"never answers", 1 try: a response timeout is retried only on a host the request has not tried yet, and this ' +
          `proxy has one target. A hung upstream costs one timeout.response (${timeout.response} ms here; 30 s by default) ` +
          'and one upstream request, not three of each.',
      ),
    );
  }
  const open = answers.get('/circuit');
  const rfc = answers.get('/circuit-rfc9209');
  if (open?.code === 'CIRCUIT_OPEN' && open.status === '502') {
    out.push(
      wrap(
        '"keeps failing: circuit opens", 502: every error is a 502 unless you set the `status` option. RFC 9209 ' +
          `says 503 for CIRCUIT_OPEN (destination_unavailable)` +
          (rfc?.code === 'CIRCUIT_OPEN' ? `; with \`status: rfc9209Status\` the same refusal is the ${rfc.status} in the next row.` : '.'),
      ),
    );
  }
  const refused = [...answers.entries()].filter(([, answer]) => answer.attempts === 0).map(([path]) => path);
  if (refused.length > 0) {
    out.push(wrap('0 tries: answered without calling the upstream (a body already consumed, an open circuit, the capacity limit).'));
  }
  const cut = ['/mid-body', '/stall'].filter((path) => answers.get(path)?.ending === 'cut off');
  if (cut.length > 0) {
    out.push(
      wrap(
        '200 and "cut off": the head and the first body bytes had reached the client, so a 502 was no longer possible. ' +
          'The proxy cut the connection, so the client cannot take the body for complete, and told onFailure.',
      ),
    );
  }
  return out;
}

await main();

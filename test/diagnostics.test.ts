// The proxy's diagnostics_channel events: what one exchange publishes, in
// order and field by field; every way an exchange ends; the refusal, budget,
// breaker, host and stale events; a WebSocket handshake; and nothing at all
// published (or built) while nobody subscribes.

import { channel, subscribe, unsubscribe } from 'node:diagnostics_channel';
import { once } from 'node:events';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { DIAGNOSTICS_CHANNELS, type AttemptMessage, type ExchangeMessage } from '../src/index.js';
import { faults, refusedUrl } from '../src/testing/index.js';
import { listen, onCleanup, proxy, rawGet, upstream } from './support.js';

const NAMES = Object.values(DIAGNOSTICS_CHANNELS);
const short = (name: string): string => name.replace('resilient-proxy:', '');

interface Seen {
  readonly name: string;
  /** The message as it was when published (the start and end of one exchange share an object). */
  readonly fields: Record<string, unknown>;
  readonly message: object;
}

/** Subscribes to `names` for the test; `next(name)` resolves with the next message published on it. */
function record(names: readonly string[] = NAMES): { seen: Seen[]; next: (name: string) => Promise<Seen> } {
  const seen: Seen[] = [];
  const waiting: { name: string; resolve: (seen: Seen) => void }[] = [];
  for (const name of names) {
    const listener = (message: unknown): void => {
      const fields: Record<string, unknown> = { ...(message as Record<string, unknown>) };
      if (typeof fields.headers === 'object' && fields.headers !== null) fields.headers = { ...fields.headers };
      const entry: Seen = { name: short(name), fields, message: message as object };
      seen.push(entry);
      const index = waiting.findIndex((w) => w.name === entry.name);
      if (index !== -1) waiting.splice(index, 1)[0]?.resolve(entry);
    };
    subscribe(name, listener);
    onCleanup(() => unsubscribe(name, listener));
  }
  const next = (name: string): Promise<Seen> => new Promise((resolve) => waiting.push({ name, resolve }));
  return { seen, next };
}

/** The fields a test can state exactly: times and the request object left out. */
function stable(fields: Record<string, unknown>): Record<string, unknown> {
  const { startTime, duration, req, ...rest } = fields;
  expect(typeof startTime).toBe('number');
  if ('outcome' in fields && fields.outcome !== null) expect(duration).toBeGreaterThanOrEqual(0);
  if (req !== undefined) expect(typeof (req as IncomingMessage).method).toBe('string');
  return rest;
}

describe('diagnostics_channel events', () => {
  it('one GET retried once: exchange, attempt, retry, attempt, end, in order and field by field; a subscriber adds a header to each attempt', async () => {
    const up = await upstream();
    up.enqueue(faults.status(503));
    const { url } = await listen(proxy({ target: up.url, name: 'orders', retry: { minDelay: 1, maxDelay: 1 } }));
    const { seen, next } = record();
    const add = (message: unknown): void => {
      const attempt = message as AttemptMessage;
      attempt.headers['x-added'] = `attempt-${attempt.attempt}`;
    };
    subscribe(DIAGNOSTICS_CHANNELS.attemptStart, add);
    onCleanup(() => unsubscribe(DIAGNOSTICS_CHANNELS.attemptStart, add));
    const ended = next('exchange:end');

    const response = await fetch(`${url}/items?x=1`, { headers: { 'x-request-id': 'req-1' } });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('ok');
    await ended;

    expect(seen.map((s) => s.name)).toStrictEqual(['exchange:start', 'attempt:start', 'attempt:end', 'retry', 'attempt:start', 'attempt:end', 'exchange:end']);
    const common = { requestId: 'req-1', upstream: 'orders', method: 'GET', path: '/items?x=1', upgrade: false };
    const [start, attempt1, end1, retry, attempt2, end2, end] = seen as [Seen, Seen, Seen, Seen, Seen, Seen, Seen];
    expect(stable(start.fields)).toStrictEqual({ ...common, outcome: null, statusCode: null, code: null, attempts: 0 });
    expect(start.fields.req).toBeDefined();
    const attempt = { ...common, origin: up.url, outcome: null, statusCode: null, code: null, error: null };
    expect(stable(attempt1.fields)).toMatchObject({ ...attempt, attempt: 1 });
    expect((attempt1.fields.headers as Record<string, string>)['x-attempt-count']).toBe('1');
    expect((attempt1.fields.headers as Record<string, string>)['x-request-id']).toBe('req-1');
    expect(stable(end1.fields)).toMatchObject({ ...attempt, attempt: 1, outcome: 'status', statusCode: 503, code: 'UPSTREAM_STATUS' });
    expect(retry.fields).toMatchObject({ requestId: 'req-1', upstream: 'orders', method: 'GET', path: '/items?x=1', code: 'UPSTREAM_STATUS', attempt: 1, receivedStatus: 503, target: up.url, phase: 'response', error: null });
    expect(retry.fields.delay).toBeTypeOf('number');
    expect(stable(attempt2.fields)).toMatchObject({ ...attempt, attempt: 2 });
    expect((attempt2.fields.headers as Record<string, string>)['x-attempt-count']).toBe('2');
    expect(stable(end2.fields)).toMatchObject({ ...attempt, attempt: 2, outcome: 'delivered', statusCode: 200, code: null });
    expect(stable(end.fields)).toStrictEqual({ ...common, outcome: 'delivered', statusCode: 200, code: null, attempts: 2 });
    // Start and end are one object per exchange and per attempt, as with Node's tracing channels.
    expect(end.message).toBe(start.message);
    expect(end1.message).toBe(attempt1.message);
    expect(end2.message).not.toBe(end1.message);
    expect(up.requests.map((r) => r.headers['x-added'])).toStrictEqual(['attempt-1', 'attempt-2']);
  });

  it('nothing is published, and no message built, while nobody subscribes; a subscriber to one channel gets only that one', async () => {
    const published = new Map<string, number>();
    for (const name of NAMES) {
      const target = channel(name) as ReturnType<typeof channel> & { publish: (message: unknown) => void };
      // Counts every publish, then does what the channel would do (its prototype changes with subscribers).
      Object.defineProperty(target, 'publish', {
        configurable: true,
        value(this: typeof target, message: unknown) {
          published.set(short(name), (published.get(short(name)) ?? 0) + 1);
          (Object.getPrototypeOf(this) as { publish: (message: unknown) => void }).publish.call(this, message);
        },
      });
      onCleanup(() => Reflect.deleteProperty(target, 'publish'));
    }
    const up = await upstream({ fallback: faults.status(503) });
    const { url } = await listen(proxy({ target: up.url, name: 'quiet', retry: { minDelay: 1, maxDelay: 1, retries: 1 }, breaker: { volumeThreshold: 1, errorThresholdPercentage: 1 } }));
    // Two attempts (a retry), the request's failure opening the circuit, then a refusal and a contract.
    expect((await fetch(`${url}/a`)).status).toBe(502);
    expect((await fetch(`${url}/b`)).status).toBe(502);
    expect(up.requestCount).toBe(2);
    expect([...published]).toStrictEqual([]);

    const { seen, next } = record([DIAGNOSTICS_CHANNELS.refusal]);
    const refused = next('refusal');
    expect((await fetch(`${url}/c`)).status).toBe(502);
    await refused;
    expect([...published]).toStrictEqual([['refusal', 1]]);
    expect(seen.map((s) => s.fields)).toStrictEqual([
      { upstream: 'quiet', requestId: expect.any(String) as string, method: 'GET', path: '/c', reason: 'circuit_open', code: 'CIRCUIT_OPEN', attempts: 0, upgrade: false },
    ]);
  });

  it('the circuit opening, then a refusal on arrival: breaker:state, refusal, and the contract at the end', async () => {
    const up = await upstream({ fallback: faults.status(503) });
    const { url } = await listen(proxy({ target: up.url, name: 'b', retry: false, breaker: { volumeThreshold: 1, errorThresholdPercentage: 1 } }));
    const { seen, next } = record();
    let ended = next('exchange:end');
    expect((await fetch(`${url}/x`)).status).toBe(502);
    await ended;
    ended = next('exchange:end');
    expect((await fetch(`${url}/y`)).status).toBe(502);
    await ended;

    expect(seen.map((s) => s.name)).toStrictEqual([
      'exchange:start', 'attempt:start', 'attempt:end', 'breaker:state', 'exchange:end',
      'exchange:start', 'refusal', 'exchange:end',
    ]);
    expect(seen[3]?.fields).toStrictEqual({ upstream: 'b', from: 'closed', to: 'open' });
    expect(stable(seen[4]?.fields ?? {})).toMatchObject({ outcome: 'contract', statusCode: 502, code: 'UPSTREAM_STATUS', attempts: 1 });
    expect(seen[6]?.fields).toMatchObject({ upstream: 'b', path: '/y', reason: 'circuit_open', code: 'CIRCUIT_OPEN', attempts: 0 });
    expect(stable(seen[7]?.fields ?? {})).toMatchObject({ outcome: 'contract', statusCode: 502, code: 'CIRCUIT_OPEN', attempts: 0 });
  });

  it('a retry the budget refuses: budget:exhausted, and no retry event', async () => {
    const up = await upstream({ fallback: faults.status(503) });
    const { url } = await listen(proxy({ target: up.url, name: 'poor', retry: { budget: { maxTokens: 0 } }, breaker: false }));
    const { seen, next } = record();
    const ended = next('exchange:end');
    expect((await fetch(`${url}/x`)).status).toBe(502);
    await ended;
    expect(seen.map((s) => s.name)).toStrictEqual(['exchange:start', 'attempt:start', 'attempt:end', 'budget:exhausted', 'exchange:end']);
    expect(seen[3]?.fields).toStrictEqual({ upstream: 'poor', requestId: expect.any(String) as string, method: 'GET', path: '/x', code: 'UPSTREAM_STATUS', attempt: 1, upgrade: false });
  });

  it('a host ejected by outlier detection: host:state, once, with the reason', async () => {
    const up = await upstream();
    const refused = await refusedUrl();
    const { url } = await listen(proxy({ target: [refused, up.url], name: 'group', balance: 'round-robin', outlierDetection: { consecutiveFailures: 1 }, retry: { minDelay: 1, maxDelay: 1 } }));
    const { seen, next } = record([DIAGNOSTICS_CHANNELS.hostState, DIAGNOSTICS_CHANNELS.attemptEnd, DIAGNOSTICS_CHANNELS.exchangeEnd]);
    const ended = next('exchange:end');
    expect((await fetch(`${url}/x`)).status).toBe(200);
    await ended;
    expect(seen.map((s) => s.name)).toStrictEqual(['host:state', 'attempt:end', 'attempt:end', 'exchange:end']);
    expect(seen[0]?.fields).toStrictEqual({ upstream: 'group', host: refused, from: 'healthy', to: 'ejected', reason: 'consecutive-failures' });
    expect(seen[1]?.fields).toMatchObject({ origin: refused, outcome: 'failed', statusCode: null, code: 'UPSTREAM_CONNECT_REFUSED' });
    expect((seen[1]?.fields.error as { code?: string }).code).toBe('ECONNREFUSED');
    expect(seen[2]?.fields).toMatchObject({ origin: up.url, outcome: 'delivered', statusCode: 200, attempt: 2 });
  });

  it('two hosts of three ejected: group:panic once on entering, and the hook told the same', async () => {
    const ok = await upstream();
    const [dead1, dead2] = [await refusedUrl(), await refusedUrl()];
    const told: unknown[] = [];
    const { url } = await listen(
      proxy({
        target: [dead1, dead2, ok.url],
        name: 'panicky',
        balance: 'round-robin',
        outlierDetection: { consecutiveFailures: 1, maxEjectionPercent: 100, baseEjectionTime: 60_000 },
        retry: { minDelay: 1, maxDelay: 1 },
        hooks: { onPanic: (change) => told.push(change) },
      }),
    );
    const { seen } = record([DIAGNOSTICS_CHANNELS.groupPanic]);
    // Round-robin: dead1 (ejected; retried on dead2, ejected; retried on ok). Two of three out: panic from the next pick.
    expect((await fetch(`${url}/a`)).status).toBe(200);
    expect((await fetch(`${url}/b`)).status).toBe(200);
    expect(seen.map((s) => s.fields)).toStrictEqual([{ upstream: 'panicky', panic: true, eligible: 1, hosts: 3 }]);
    expect(told).toStrictEqual(seen.map((s) => s.fields));
  });

  it('a failure a kept response hides: stale, and the exchange ends stale', async () => {
    const up = await upstream();
    up.enqueue(faults.respond(200, 'kept', { 'cache-control': 'max-age=60' }), faults.status(503));
    const { url } = await listen(proxy({ target: up.url, name: 'catalog', retry: false, staleIfError: true }));
    expect(await (await fetch(`${url}/item`)).text()).toBe('kept');
    const { seen, next } = record([DIAGNOSTICS_CHANNELS.stale, DIAGNOSTICS_CHANNELS.exchangeEnd]);
    const ended = next('exchange:end');
    const response = await fetch(`${url}/item`);
    expect(await response.text()).toBe('kept');
    await ended;
    expect(seen.map((s) => s.name)).toStrictEqual(['stale', 'exchange:end']);
    expect(seen[0]?.fields).toMatchObject({ upstream: 'catalog', code: 'UPSTREAM_STATUS', receivedStatus: 503, statusCode: 200, attempts: 1, path: '/item' });
    expect(stable(seen[1]?.fields ?? {})).toMatchObject({ outcome: 'stale', statusCode: 200, code: 'UPSTREAM_STATUS', attempts: 1 });
  });

  it('a body cut after the head went out ends "cut"; a client that leaves ends "client-gone" and its attempt "cancelled"', async () => {
    const up = await upstream();
    up.enqueue(faults.resetMidBody(), faults.hang());
    const { url } = await listen(proxy({ target: up.url, name: 'cuts', retry: false }));
    const { seen, next } = record([DIAGNOSTICS_CHANNELS.attemptEnd, DIAGNOSTICS_CHANNELS.exchangeEnd]);
    let ended = next('exchange:end');
    expect((await rawGet(`${url}/cut`)).ending).toBe('truncated');
    await ended;
    ended = next('exchange:end');
    const client = httpRequest(`${url}/gone`, { agent: false });
    client.on('error', () => undefined);
    client.end();
    await up.waitForRequests(2);
    client.destroy();
    await ended;

    expect(seen.map((s) => [s.name, s.fields.outcome, s.fields.statusCode, s.fields.code])).toStrictEqual([
      ['attempt:end', 'failed', 200, 'UPSTREAM_RESPONSE_INCOMPLETE'],
      ['exchange:end', 'cut', 200, 'UPSTREAM_RESPONSE_INCOMPLETE'],
      ['attempt:end', 'cancelled', null, null],
      ['exchange:end', 'client-gone', null, null],
    ]);
    expect(seen[2]?.fields.error).toBeInstanceOf(Error);
  });

  it('a WebSocket handshake is an exchange and an attempt, marked upgrade, ending with 101', async () => {
    const server = createServer();
    const wss = new WebSocketServer({ server });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    onCleanup(async () => {
      for (const socket of wss.clients) socket.terminate();
      wss.close();
      server.close();
      await once(server, 'close');
    });
    const handler = proxy({ target: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, name: 'chat' });
    const gateway = await listen((req: IncomingMessage, res: ServerResponse) => handler(req, res));
    gateway.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void handler.upgrade(req, socket, head));
    const { seen, next } = record([DIAGNOSTICS_CHANNELS.exchangeStart, DIAGNOSTICS_CHANNELS.attemptStart, DIAGNOSTICS_CHANNELS.attemptEnd, DIAGNOSTICS_CHANNELS.exchangeEnd]);
    const ended = next('exchange:end');
    const socket = new WebSocket(`ws://127.0.0.1:${gateway.port}/room?x=1`);
    onCleanup(() => socket.terminate());
    await once(socket, 'open');
    await ended;
    expect(seen.map((s) => [s.name, s.fields.upgrade, s.fields.path, s.fields.outcome, s.fields.statusCode])).toStrictEqual([
      ['exchange:start', true, '/room?x=1', null, null],
      ['attempt:start', true, '/room?x=1', null, null],
      ['attempt:end', true, '/room?x=1', 'delivered', 101],
      ['exchange:end', true, '/room?x=1', 'delivered', 101],
    ]);
    expect((seen[0]?.message as ExchangeMessage).attempts).toBe(1);
  });
});

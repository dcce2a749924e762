// Deadline propagation: what a real upstream reads in the deadline header on
// each attempt, a client's deadline honoured only when trusted, and no
// attempt started with too little time left. The bounds on the header are
// what `timeout.total` minus the margin allows; the lower ones only need the
// test's own few steps to take less than the time given.

import type { IncomingMessage, ServerResponse } from 'node:http';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createProxy } from '../src/index.js';
import { formatDeadline, parseDeadline } from '../src/policy/deadline.js';
import { expressGateway, listen, testRegistry } from './support.js';

/** An upstream that records the header `name` of each request and answers with `answer(n)` (n from 1). */
async function recording(name: string, answer: (n: number, res: ServerResponse) => void) {
  const seen: (string | undefined)[] = [];
  const { url } = await listen((req: IncomingMessage, res: ServerResponse) => {
    const value = req.headers[name];
    seen.push(typeof value === 'string' ? value : undefined);
    answer(seen.length, res);
  });
  return { url, seen };
}

const ok = (_n: number, res: ServerResponse): void => void res.writeHead(200, { 'content-length': 2 }).end('ok');

describe('deadline propagation', () => {
  it('sends what is left of timeout.total minus the margin, in ms, replacing what an untrusted client sent', async () => {
    const up = await recording('x-request-timeout-ms', ok);
    const server = await listen(expressGateway({ target: up.url, timeout: { total: 5000 }, deadline: true }));

    const response = await request(server.url).get('/api/x').set('x-request-timeout-ms', '50');

    expect(response.status).toBe(200);
    expect(up.seen).toHaveLength(1);
    const sent = Number(up.seen[0]);
    expect(sent).toBeLessThanOrEqual(4990);
    expect(sent).toBeGreaterThan(4000);
  });

  it('sends less on a retry: the time the first attempt took is spent', async () => {
    const up = await recording('x-request-timeout-ms', (n, res) => {
      if (n === 1) setTimeout(() => res.writeHead(503, { 'content-length': 0 }).end(), 300);
      else ok(n, res);
    });
    const server = await listen(expressGateway({ target: up.url, timeout: { total: 5000 }, deadline: true, retry: { minDelay: 1, maxDelay: 1 } }));

    expect((await request(server.url).get('/api/x')).status).toBe(200);
    const [first, second] = up.seen.map(Number);
    expect(second).toBeLessThanOrEqual((first ?? 0) - 300);
    expect(second).toBeGreaterThan(3000);
  });

  it("sends gRPC's form with format 'grpc': at most 8 digits and a unit", async () => {
    const up = await recording('grpc-timeout', ok);
    const server = await listen(expressGateway({ target: up.url, timeout: { total: 5000 }, deadline: { format: 'grpc' } }));

    expect((await request(server.url).get('/api/x')).status).toBe(200);
    expect(up.seen[0]).toMatch(/^\d{1,8}m$/);
    expect(parseDeadline(up.seen[0], 'grpc')).toBeLessThanOrEqual(4990);
  });

  it('a trusted client deadline caps timeout.total: the upstream is told less, and a slow one ends in the total-timeout contract', async () => {
    const up = await recording('x-request-timeout-ms', () => undefined);
    const server = await listen(expressGateway({ target: up.url, name: 'orders', registry: testRegistry(), timeout: { total: 10_000 }, deadline: { trustClient: true } }));

    const response = await request(server.url).get('/api/x').set('x-request-timeout-ms', '200').set('x-request-id', 'r1');

    expect(Number(up.seen[0])).toBeLessThanOrEqual(190);
    expect(response.status).toBe(502);
    expect(response.headers['proxy-status']).toBe('resilient-proxy; error=http_response_timeout');
    expect(response.body).toMatchObject({ code: 'UPSTREAM_RESPONSE_TIMEOUT', attempts: 1, requestId: 'r1' });
  });

  it('with only a trusted client deadline, a request without a valid one has none: the header is not passed on', async () => {
    const up = await recording('x-request-timeout-ms', ok);
    const server = await listen(expressGateway({ target: up.url, deadline: { trustClient: true } }));

    expect((await request(server.url).get('/api/x').set('x-request-timeout-ms', 'soon')).status).toBe(200);
    expect((await request(server.url).get('/api/x').set('x-request-timeout-ms', '3000')).status).toBe(200);
    expect(up.seen[0]).toBeUndefined();
    expect(Number(up.seen[1])).toBeLessThanOrEqual(2990);
  });

  it('an untrusted client deadline does not shorten the wait', async () => {
    const up = await recording('x-request-timeout-ms', (n, res) => void setTimeout(() => ok(n, res), 300));
    const server = await listen(expressGateway({ target: up.url, timeout: { total: 5000 }, deadline: true }));

    expect((await request(server.url).get('/api/x').set('x-request-timeout-ms', '100')).status).toBe(200);
  });

  it('starts no attempt that could tell the upstream less than the minimum: the total-timeout contract, the upstream untouched', async () => {
    const up = await recording('x-request-timeout-ms', ok);
    const server = await listen(expressGateway({ target: up.url, name: 'orders', registry: testRegistry(), timeout: { total: 5000 }, deadline: { trustClient: true, margin: 10, minimum: 50 } }));

    const response = await request(server.url).get('/api/x').set('x-request-timeout-ms', '59').set('x-request-id', 'r2');

    expect(response.status).toBe(502);
    expect(response.body).toStrictEqual({
      type: 'about:blank',
      title: 'Bad Gateway',
      status: 502,
      detail: 'The upstream service did not respond in time.',
      code: 'UPSTREAM_RESPONSE_TIMEOUT',
      upstream: 'orders',
      attempts: 0,
      requestId: 'r2',
    });
    expect(up.seen).toHaveLength(0);
  });

  it('retries no more once a retry could tell the upstream less than the minimum: the failure it had is answered', async () => {
    const up = await recording('x-request-timeout-ms', (_n, res) => void setTimeout(() => res.writeHead(503, { 'content-length': 0 }).end(), 200));
    const server = await listen(expressGateway({ target: up.url, name: 'orders', registry: testRegistry(), timeout: { total: 400 }, deadline: { margin: 10, minimum: 200 }, retry: { minDelay: 1, maxDelay: 1 } }));

    const response = await request(server.url).get('/api/x');

    expect(response.status).toBe(502);
    expect(response.body).toMatchObject({ code: 'UPSTREAM_STATUS', attempts: 1 });
    expect(up.seen).toHaveLength(1);
  });
});

describe('deadline header forms', () => {
  it.each([
    [1990, 'ms', '1990'],
    [1990.9, 'ms', '1990'],
    [-5, 'ms', '0'],
    [1990, 'grpc', '1990m'],
    [99_999_999, 'grpc', '99999999m'],
    [100_000_000, 'grpc', '100000S'],
  ] as const)('%d ms as %s is %s', (ms, format, value) => {
    expect(formatDeadline(ms, format)).toBe(value);
  });

  it.each([
    ['1500', 'ms', 1500],
    ['15.5', 'ms', null],
    ['', 'ms', null],
    ['2S', 'grpc', 2000],
    ['1H', 'grpc', 3_600_000],
    ['3M', 'grpc', 180_000],
    ['250m', 'grpc', 250],
    ['5000u', 'grpc', 5],
    ['123456789m', 'grpc', null],
    ['10', 'grpc', null],
    ['10s', 'grpc', null],
  ] as const)('%j read as %s is %s', (value, format, ms) => {
    expect(parseDeadline(value, format)).toBe(ms);
  });
});

describe('deadline option', () => {
  it.each([
    [{}, { deadline: true }, 'Expected `timeout.total` to be set with `deadline`: the deadline sent upstream is what remains of it, and without it (and without `deadline.trustClient`) there is none to send.'],
    [{ timeout: { total: 1000 } }, { deadline: { format: 'seconds' } }, "Expected `deadline.format` to be 'ms' or 'grpc', got the string \"seconds\"."],
    [{ timeout: { total: 1000 } }, { deadline: { header: 'bad header' } }, 'Expected `deadline.header` to be a header name, got the string "bad header".'],
    [{ timeout: { total: 1000 } }, { deadline: { margin: -1 } }, 'Expected `deadline.margin` to be a number of milliseconds from 0 to 60000, got -1.'],
    [{ timeout: { total: 1000 } }, { deadline: { trust: true } }, 'Unknown option `deadline.trust`. Known options: header, format, margin, minimum, trustClient.'],
  ])('%j with %j is a TypeError naming it', (base, extra, message) => {
    expect(() => createProxy({ target: 'http://127.0.0.1:1', registry: testRegistry(), ...base, ...extra } as never)).toThrow(new TypeError(message));
  });
});

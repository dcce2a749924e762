// Logs that join up: the pino recipe of docs/observability.md (pino-http and hooks.onFailure
// share one request id under one key), and foldRefusals, which keeps an open
// circuit from writing a line per refused request without losing the counts.

import express from 'express';
import { pino } from 'pino';
import { pinoHttp } from 'pino-http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { foldRefusals, requestId, type FailureEvent } from '../src/index.js';
import { faults } from '../src/testing/index.js';
import { LogLines } from './integration/harness.js';
import { listen, proxy, upstream } from './support.js';

interface Line {
  readonly level: number;
  readonly msg: string;
  readonly reqId?: string;
  readonly code?: string;
  readonly refusals?: number;
  readonly res?: { statusCode: number };
}

const parse = (line: string): Line => JSON.parse(line) as Line;

describe('the pino recipe', () => {
  it('pino-http (genReqId: requestId, quietReqLogger) and onFailure → logger.child({ reqId }) log the one id the upstream got and the 502 echoes', async () => {
    const up = await upstream({ fallback: faults.status(503) });
    const lines = new LogLines();
    const logger = pino({}, lines.stream);
    const app = express();
    app.use(pinoHttp({ logger, genReqId: (req) => requestId(req), quietReqLogger: true }));
    app.use(
      '/api',
      proxy({
        target: up.url,
        name: 'orders',
        retry: false,
        hooks: {
          onFailure: (event) => {
            logger.child({ reqId: event.requestId }).warn({ code: event.code, upstream: event.upstream, attempts: event.attempts, statusCode: event.statusCode, err: event.error }, 'upstream failure');
          },
        },
      }),
    );
    const { url } = await listen(app);

    const response = await fetch(`${url}/api/orders/7`);
    const problem = (await response.json()) as { requestId: string };
    const failure = parse(await lines.next((line) => parse(line).msg === 'upstream failure', 'the onFailure line'));
    // pino-http's line for a 5xx says "request errored".
    const completed = parse(await lines.next((line) => parse(line).msg === 'request errored', "pino-http's line"));

    expect(response.status).toBe(502);
    const sent = up.requests[0]?.headers['x-request-id'];
    expect(typeof sent).toBe('string');
    expect(failure).toMatchObject({ level: 40, reqId: sent, code: 'UPSTREAM_STATUS', upstream: 'orders', attempts: 1, statusCode: 502 });
    expect(completed.reqId).toBe(sent);
    expect(completed.res?.statusCode).toBe(502);
    expect(problem.requestId).toBe(sent);
  });

  it('with foldRefusals, an open circuit logs its first refusal at once and the rest as one line with their count', async () => {
    const up = await upstream({ fallback: faults.status(503) });
    const lines = new LogLines();
    const logger = pino({}, lines.stream);
    const onFailure = foldRefusals(
      (event) => logger.child({ reqId: event.requestId }).warn({ code: event.code, refusals: event.refusals }, 'upstream failure'),
      { interval: 60_000 },
    );
    const { url } = await listen(proxy({ target: up.url, name: 'orders', retry: false, breaker: { volumeThreshold: 1, errorThresholdPercentage: 1 }, hooks: { onFailure } }));

    expect((await fetch(`${url}/opens`)).status).toBe(502);
    for (let i = 0; i < 30; i += 1) expect((await fetch(`${url}/refused/${i}`)).status).toBe(502);
    const beforeFlush = lines.items.map(parse).map((line) => [line.code, line.refusals]);
    onFailure.flush();
    onFailure.flush();

    expect(up.requestCount).toBe(1);
    expect(beforeFlush).toStrictEqual([
      ['UPSTREAM_STATUS', undefined],
      ['CIRCUIT_OPEN', 1],
    ]);
    expect(lines.items.map(parse).map((line) => [line.code, line.refusals])).toStrictEqual([
      ['UPSTREAM_STATUS', undefined],
      ['CIRCUIT_OPEN', 1],
      ['CIRCUIT_OPEN', 29],
    ]);
  });
});

describe('foldRefusals, in time (fake timers)', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  const event = (code: FailureEvent['code'], upstream: string, requestId: string): FailureEvent => ({
    code,
    proxyStatus: null,
    phase: null,
    upstream,
    target: 'http://10.0.0.1:8080',
    requestId,
    method: 'GET',
    path: '/',
    receivedStatus: null,
    error: null,
    attempts: 0,
    statusCode: 503,
  });

  it('the first refusal at once, then at most one per second per upstream and code with the folded count; other failures pass through', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const reported: [string, string, string, number | undefined][] = [];
    const hook = foldRefusals((e) => reported.push([e.upstream, e.code, e.requestId, e.refusals]));

    hook(event('CIRCUIT_OPEN', 'orders', 'r0'));
    for (let i = 1; i <= 9; i += 1) {
      vi.advanceTimersByTime(100);
      hook(event('CIRCUIT_OPEN', 'orders', `r${i}`));
    }
    hook(event('UPSTREAM_RESET', 'orders', 'reset'));
    hook(event('CIRCUIT_OPEN', 'billing', 'b0'));
    hook(event('UPSTREAM_OVERLOADED', 'orders', 'o0'));
    hook(event('UPSTREAM_OVERLOADED', 'orders', 'o1'));
    expect(reported).toStrictEqual([
      ['orders', 'CIRCUIT_OPEN', 'r0', 1],
      ['orders', 'UPSTREAM_RESET', 'reset', undefined],
      ['billing', 'CIRCUIT_OPEN', 'b0', 1],
      ['orders', 'UPSTREAM_OVERLOADED', 'o0', 1],
    ]);

    // t = 1000: a second after the first report, the nine folded since.
    vi.advanceTimersByTime(100);
    expect(reported.slice(4)).toStrictEqual([['orders', 'CIRCUIT_OPEN', 'r9', 9]]);
    // t = 1900: the overload folded at t = 900 goes out a second after its first.
    vi.advanceTimersByTime(900);
    expect(reported.slice(5)).toStrictEqual([['orders', 'UPSTREAM_OVERLOADED', 'o1', 1]]);

    // Steady refusals: one line per second, each with its second's count.
    for (let i = 0; i < 20; i += 1) {
      vi.advanceTimersByTime(100);
      hook(event('CIRCUIT_OPEN', 'orders', `s${i}`));
    }
    expect(reported.slice(6)).toStrictEqual([
      ['orders', 'CIRCUIT_OPEN', 's0', 1],
      ['orders', 'CIRCUIT_OPEN', 's9', 9],
    ]);
    vi.advanceTimersByTime(5_000);
    expect(reported.slice(8)).toStrictEqual([['orders', 'CIRCUIT_OPEN', 's19', 10]]);
    // Quiet for longer than the interval: the next one is reported at once, alone.
    hook(event('CIRCUIT_OPEN', 'orders', 'late'));
    expect(reported.slice(9)).toStrictEqual([['orders', 'CIRCUIT_OPEN', 'late', 1]]);
    expect(vi.getTimerCount()).toBe(0);
    const total = reported.filter(([upstream, code]) => upstream === 'orders' && code === 'CIRCUIT_OPEN').reduce((sum, [, , , n]) => sum + (n ?? 0), 0);
    expect(total).toBe(10 + 20 + 1);
  });

  it('flush() reports what is folded now; a hook that throws is ignored; a bad interval is a TypeError', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const reported: (number | undefined)[] = [];
    const hook = foldRefusals(
      (e) => {
        reported.push(e.refusals);
        throw new Error('logger down');
      },
      { interval: 250, codes: ['CIRCUIT_OPEN'] },
    );
    hook(event('CIRCUIT_OPEN', 'orders', 'a'));
    hook(event('CIRCUIT_OPEN', 'orders', 'b'));
    hook(event('CIRCUIT_OPEN', 'orders', 'c'));
    hook(event('UPSTREAM_OVERLOADED', 'orders', 'o'));
    hook.flush();
    expect(reported).toStrictEqual([1, undefined, 2]);
    expect(vi.getTimerCount()).toBe(0);
    expect(() => foldRefusals(() => undefined, { interval: 0 })).toThrow(TypeError);
  });
});

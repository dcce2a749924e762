// Active health checks: the counter that turns results into verdicts is pure
// and checked from tables; the checker runs against a real server whose
// answers the test scripts, and its schedule under fake timers.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Pool } from 'undici';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { refusedUrl } from '../src/testing/index.js';
import { CheckCounter, HealthChecker, type CheckVerdict, type HealthCheckOptions } from '../src/upstream/health-check.js';
import { listen, onCleanup } from './support.js';

const options: HealthCheckOptions = { path: '/healthz', interval: 5, timeout: 1000, healthyThreshold: 2, unhealthyThreshold: 2 };

afterEach(() => {
  vi.useRealTimers();
});

describe('CheckCounter', () => {
  it.each([
    { thresholds: [2, 2], results: [false], verdicts: [null] },
    { thresholds: [2, 2], results: [false, false], verdicts: [null, 'unhealthy'] },
    { thresholds: [2, 2], results: [false, true, false], verdicts: [null, null, null] },
    { thresholds: [2, 2], results: [false, false, false, true], verdicts: [null, 'unhealthy', null, null] },
    { thresholds: [2, 2], results: [false, false, true, true], verdicts: [null, 'unhealthy', null, 'healthy'] },
    { thresholds: [2, 2], results: [false, false, true, false, true, true], verdicts: [null, 'unhealthy', null, null, null, 'healthy'] },
    { thresholds: [2, 2], results: [true, true, true], verdicts: [null, null, null] },
    { thresholds: [1, 1], results: [false, true, false, true], verdicts: ['unhealthy', 'healthy', 'unhealthy', 'healthy'] },
    { thresholds: [3, 1], results: [false, true, true, true, true], verdicts: ['unhealthy', null, null, 'healthy', null] },
    { thresholds: [1, 3], results: [false, false, true, false, false, false], verdicts: [null, null, null, null, null, 'unhealthy'] },
  ] as { thresholds: [number, number]; results: boolean[]; verdicts: CheckVerdict[] }[])(
    'healthy/unhealthy thresholds $thresholds: $results → $verdicts',
    ({ thresholds: [healthyThreshold, unhealthyThreshold], results, verdicts }) => {
      const counter = new CheckCounter({ ...options, healthyThreshold, unhealthyThreshold });
      expect(counter.healthy).toBe(true);
      expect(results.map((passed) => counter.record(passed))).toStrictEqual(verdicts);
    },
  );
});

interface CheckedServer {
  readonly origin: string;
  /** Each check received: `METHOD path user-agent`. */
  readonly received: string[];
  /** Resolves when the connection of the n-th request (0-based) closed. */
  closed(n: number): Promise<void>;
  /** Resolves once `count` checks have arrived. */
  arrived(count: number): Promise<void>;
  /** Statuses for the next checks, in order; after them `fallback` (or no answer with `'hang'`). */
  readonly queue: (number | 'hang')[];
  fallback: number | 'hang';
}

async function server(): Promise<CheckedServer> {
  const sockets: Socket[] = [];
  const waiters: { count: number; resolve: () => void }[] = [];
  const state: CheckedServer = {
    origin: '',
    received: [],
    queue: [],
    fallback: 200,
    closed: (n) => {
      const socket = sockets[n];
      if (socket === undefined) throw new Error(`no request ${n}`);
      return socket.destroyed ? Promise.resolve() : new Promise((resolve) => socket.once('close', () => resolve()));
    },
    arrived: (count) => (state.received.length >= count ? Promise.resolve() : new Promise((resolve) => waiters.push({ count, resolve }))),
  };
  const { url } = await listen((req: IncomingMessage, res: ServerResponse) => {
    sockets.push(req.socket);
    state.received.push(`${req.method ?? ''} ${req.url ?? ''} ${req.headers['user-agent'] ?? ''}`);
    for (const waiter of waiters.filter((w) => state.received.length >= w.count)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
    const answer = state.queue.shift() ?? state.fallback;
    if (answer === 'hang') return;
    res.writeHead(answer, { 'content-length': '2' });
    res.end('ok');
  });
  return Object.assign(state, { origin: url });
}

type Result = [boolean, CheckVerdict];

/** A checker over a real pool; `next(n)` resolves once n results are in. */
function checker(origin: string, settings: Partial<HealthCheckOptions> = {}): { results: Result[]; next(count: number): Promise<Result[]>; stop(): void } {
  const pool = new Pool(origin);
  const results: Result[] = [];
  const waiters: { count: number; resolve: (results: Result[]) => void }[] = [];
  const running = new HealthChecker({ ...options, ...settings }, pool, origin, (passed, verdict) => {
    results.push([passed, verdict]);
    for (const waiter of waiters.filter((w) => results.length >= w.count)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve(results.slice(0, waiter.count));
    }
  });
  onCleanup(async () => {
    running.stop();
    await pool.close();
  });
  return {
    results,
    stop: () => running.stop(),
    next: (count) => (results.length >= count ? Promise.resolve(results.slice(0, count)) : new Promise((resolve) => waiters.push({ count, resolve }))),
  };
}

describe('HealthChecker against a real server', () => {
  it('GETs the path with its own user agent; two failures take the host out, two passes bring it back', async () => {
    const up = await server();
    up.queue.push(500, 500, 200, 200);
    const checks = checker(up.origin);

    expect(await checks.next(4)).toStrictEqual([
      [false, null],
      [false, 'unhealthy'],
      [true, null],
      [true, 'healthy'],
    ]);
    expect(up.received.slice(0, 4)).toStrictEqual(Array(4).fill('GET /healthz resilient-proxy-health-check'));
  });

  it('only 2xx passes', async () => {
    const up = await server();
    up.queue.push(500, 204, 301, 200, 404, 299);
    const checks = checker(up.origin, { healthyThreshold: 1, unhealthyThreshold: 1 });

    expect(await checks.next(6)).toStrictEqual([
      [false, 'unhealthy'],
      [true, 'healthy'],
      [false, 'unhealthy'],
      [true, 'healthy'],
      [false, 'unhealthy'],
      [true, 'healthy'],
    ]);
  });

  it('a check unanswered after `timeout` fails, and its connection is closed', async () => {
    const up = await server();
    up.fallback = 'hang';
    const checks = checker(up.origin, { timeout: 250 });

    expect(await checks.next(2)).toStrictEqual([
      [false, null],
      [false, 'unhealthy'],
    ]);
    await Promise.all([up.closed(0), up.closed(1)]);
  });

  it('a refused connection fails the check', async () => {
    const checks = checker(await refusedUrl(), { unhealthyThreshold: 1 });
    expect(await checks.next(1)).toStrictEqual([[false, 'unhealthy']]);
  });

  it('stop() aborts the check in flight: its connection closes and nothing more is reported', async () => {
    const up = await server();
    up.fallback = 'hang';
    const checks = checker(up.origin);
    await up.arrived(1);

    checks.stop();

    await up.closed(0);
    expect(checks.results).toStrictEqual([]);
    expect(up.received).toHaveLength(1);
  });
});

describe('HealthChecker schedule', () => {
  it('checks every interval ±10 %, on one timer at a time, and leaves none after stop()', async () => {
    // A closed pool fails every check at once, without a socket or a timer of its own.
    const pool = new Pool('http://127.0.0.1:9');
    await pool.close();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const results: boolean[] = [];
    let reported: () => void = () => undefined;
    let start = Date.now();
    const running = new HealthChecker({ ...options, interval: 1000, timeout: 50 }, pool, 'http://127.0.0.1:9', (passed) => {
      results.push(passed);
      reported();
    });
    const delays: number[] = [];
    for (let i = 0; i < 20; i += 1) {
      expect(vi.getTimerCount()).toBe(1);
      const done = new Promise<void>((resolve) => {
        reported = resolve;
      });
      await vi.advanceTimersToNextTimerAsync();
      delays.push(Date.now() - start);
      await done;
      start = Date.now();
    }
    running.stop();

    expect(results).toStrictEqual(Array(20).fill(false));
    for (const delay of delays) {
      expect(delay).toBeGreaterThanOrEqual(900);
      expect(delay).toBeLessThanOrEqual(1100);
    }
    expect(vi.getTimerCount()).toBe(0);
  });
});

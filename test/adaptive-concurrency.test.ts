// The adaptive concurrency limit in the proxy: excess attempts get the
// UPSTREAM_OVERLOADED contract at once, the limit shrinks when the upstream
// slows under load, the snapshot shows it, and latency measured while our own
// event loop stalled is not held against the upstream. Real upstreams on
// port 0; windows of one sample so a few requests move the limit.

import type { IncomingMessage, ServerResponse } from 'node:http';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createProxy } from '../src/index.js';
import { expressGateway, listen, testRegistry } from './support.js';

/** An upstream that answers 200 after `delay()` ms, and counts the requests it saw. */
async function slowUpstream(delay: () => number) {
  const seen = { count: 0 };
  const { url } = await listen((_req: IncomingMessage, res: ServerResponse) => {
    seen.count += 1;
    setTimeout(() => res.writeHead(200, { 'content-length': 2 }).end('ok'), delay());
  });
  return { url, seen };
}

/** Windows of one sample, moved all the way: each response moves the limit. */
const perSample = { windowSize: 1, minWindowTime: 1, maxWindowTime: 1, smoothing: 1 };

describe('adaptive concurrency limit', () => {
  it('answers UPSTREAM_OVERLOADED at once past the limit, and shows the limit in the snapshot', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const registry = testRegistry();
    let arrived!: () => void;
    const both = new Promise<void>((resolve) => (arrived = resolve));
    let count = 0;
    // Every request is held by the upstream until released.
    const holding = await listen((_req: IncomingMessage, res: ServerResponse) => {
      count += 1;
      if (count === 2) arrived();
      void held.then(() => res.writeHead(200, { 'content-length': 2 }).end('ok'));
    });
    const server = await listen(expressGateway({ target: holding.url, name: 'held', registry, adaptiveConcurrency: { initial: 2, min: 2, max: 2 } }));
    const first = request(server.url).get('/api/x').then((r) => r);
    const second = request(server.url).get('/api/x').then((r) => r);
    await both;
    const third = await request(server.url).get('/api/x').set('x-request-id', 'r3');

    expect(third.status).toBe(502);
    expect(third.headers['proxy-status']).toBe('resilient-proxy; error=connection_limit_reached');
    expect(third.body).toStrictEqual({
      type: 'about:blank',
      title: 'Bad Gateway',
      status: 502,
      detail: 'Too many requests are in flight to the upstream service.',
      code: 'UPSTREAM_OVERLOADED',
      upstream: 'held',
      attempts: 0,
      requestId: 'r3',
    });
    expect(registry.get('held')).toMatchObject({ capacity: 2, inFlight: 2, overloaded: 1, limit: { adaptive: true, current: 2, shortRtt: 0, longRtt: 0, windows: 0, discarded: 0 } });
    release();
    expect([(await first).status, (await second).status]).toStrictEqual([200, 200]);
    expect((await request(server.url).get('/api/x')).status).toBe(200);
  });

  it('shrinks when the upstream slows under load, and refuses the excess of the next burst', async () => {
    let delay = 0;
    const { url, seen } = await slowUpstream(() => delay);
    const registry = testRegistry();
    const server = await listen(expressGateway({ target: url, name: 'orders', registry, adaptiveConcurrency: { ...perSample, initial: 20, min: 2, max: 20 } }));

    // One at a time: app-limited, so the limit holds at 20 while the long average learns the fast latency.
    for (let i = 0; i < 12; i += 1) expect((await request(server.url).get('/api/x')).status).toBe(200);
    expect(registry.get('orders')?.capacity).toBe(20);

    // Twenty at once, each taking 1 s: every one is admitted; those started
    // with half the limit or more in flight each cut it to at most 0.5·limit + 4.
    // (A sample is dropped only if this process stalls for 100 ms meanwhile.)
    delay = 1000;
    const burst = await Promise.all(Array.from({ length: 20 }, () => request(server.url).get('/api/x')));
    expect(burst.map((r) => r.status)).toStrictEqual(Array.from({ length: 20 }, () => 200));
    const shrunk = registry.get('orders');
    const capacity = shrunk?.capacity ?? 20;
    expect(capacity).toBeLessThanOrEqual(14);
    expect(shrunk?.limit?.shortRtt).toBeGreaterThanOrEqual(1000);

    const before = seen.count;
    const next = await Promise.all(Array.from({ length: 20 }, () => request(server.url).get('/api/x')));
    const refused = next.filter((r) => r.status === 502 && (r.body as { code?: string }).code === 'UPSTREAM_OVERLOADED');
    expect(refused).toHaveLength(20 - capacity);
    expect(seen.count - before).toBe(capacity);
  });

  it('drops a latency measured while the proxy’s own event loop was blocked', async () => {
    const registry = testRegistry();
    const { url } = await listen((_req: IncomingMessage, res: ServerResponse) => {
      // The upstream shares this process: blocking here blocks the proxy's loop too.
      const until = performance.now() + 300;
      while (performance.now() < until);
      res.writeHead(200, { 'content-length': 2 }).end('ok');
    });
    const server = await listen(expressGateway({ target: url, name: 'orders', registry, adaptiveConcurrency: perSample }));

    expect((await request(server.url).get('/api/x')).status).toBe(200);
    expect(registry.get('orders')?.limit).toMatchObject({ windows: 0, discarded: 1 });
  });

  it('is a TypeError beside a fixed breaker.capacity, and between proxies that share a name but not the setting', () => {
    const registry = testRegistry();
    expect(() => createProxy({ target: 'http://127.0.0.1:1', registry, breaker: { capacity: 10 }, adaptiveConcurrency: true })).toThrow(
      new TypeError('Expected one concurrency limit, got both `breaker.capacity` and `adaptiveConcurrency`: the adaptive limit replaces the fixed one, so drop one of them.'),
    );
    const first = createProxy({ target: 'http://127.0.0.1:1', name: 'orders', registry, adaptiveConcurrency: true });
    expect(() => createProxy({ target: 'http://127.0.0.1:1', name: 'orders', registry })).toThrow(/already used with another `adaptiveConcurrency`/);
    void first.close();
  });
});

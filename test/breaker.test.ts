// The circuit breaker per upstream: when it opens, what it refuses and how
// fast, its single half-open probe, the concurrency limit, sharing between
// proxies, and what never counts against an upstream. Short real reset
// timeouts, waited on through the state-change hook, never through sleeps.

import { request as httpRequest } from 'node:http';
import express from 'express';
import request from 'supertest';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { rfc9209Status, type BreakerStateChange, type ProxyOptions } from '../src/index.js';
import { faults, type Behaviour } from '../src/testing/index.js';
import { UpstreamBreaker } from '../src/upstream/breaker.js';
import { expressGateway, listen, proxy, testRegistry, upstream } from './support.js';

/** A behaviour that holds every request until released, then answers 200. */
function gate(): { behaviour: Behaviour; release: () => void } {
  let release!: () => void;
  const opened = new Promise<void>((resolve) => (release = resolve));
  return {
    behaviour: ({ res }) => {
      void opened.then(() => res.writeHead(200, { 'content-length': 2 }).end('ok'));
    },
    release,
  };
}

/** Records state changes and lets a test wait for one. */
function stateChanges(): { changes: BreakerStateChange[]; hook: (c: BreakerStateChange) => void; reach: (to: BreakerStateChange['to'], count?: number) => Promise<void> } {
  const changes: BreakerStateChange[] = [];
  const waiters: { to: string; count: number; resolve: () => void }[] = [];
  const check = () => {
    for (const waiter of [...waiters]) {
      if (changes.filter((c) => c.to === waiter.to).length >= waiter.count) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  };
  return {
    changes,
    hook: (change) => {
      changes.push(change);
      check();
    },
    reach: (to, count = 1) =>
      new Promise((resolve) => {
        waiters.push({ to, count, resolve });
        check();
      }),
  };
}

const strict = { volumeThreshold: 5, errorThresholdPercentage: 50, resetTimeout: 30_000 };

function gateway(options: ProxyOptions): express.Express {
  return expressGateway({ name: 'orders', retry: false, ...options });
}

describe('opening', () => {
  it('does not open before volumeThreshold attempts, then opens and fails fast without calling the upstream', async () => {
    const up = await upstream({ fallback: faults.status(503) });
    const states = stateChanges();
    const app = gateway({ target: up.url, breaker: strict, hooks: { onBreakerStateChange: states.hook } });

    for (let i = 0; i < 4; i += 1) {
      const response = await request(app).get('/api/x');
      expect((response.body as { code: string }).code).toBe('UPSTREAM_STATUS');
    }
    expect(states.changes).toStrictEqual([]);

    await request(app).get('/api/x');
    expect(states.changes).toStrictEqual([{ upstream: 'orders', from: 'closed', to: 'open' }]);

    const refused = await request(app).get('/api/x').set('x-request-id', 'r1');
    expect(refused.status).toBe(502);
    expect(refused.headers['content-type']).toBe('application/problem+json');
    expect(refused.headers['cache-control']).toBe('no-store');
    expect(refused.headers['proxy-status']).toBe('resilient-proxy; error=destination_unavailable');
    expect(refused.headers['retry-after']).toBe('30');
    expect(refused.headers['x-request-id']).toBe('r1');
    expect(refused.body).toStrictEqual({
      type: 'about:blank',
      title: 'Bad Gateway',
      status: 502,
      detail: 'The upstream service is failing; requests to it are paused for a while.',
      code: 'CIRCUIT_OPEN',
      upstream: 'orders',
      attempts: 0,
      requestId: 'r1',
    });
    expect(up.requests).toHaveLength(5);
  });

  it('with the defaults, one client failing 30 requests on a quiet service does not open the circuit', async () => {
    const up = await upstream({ fallback: faults.status(503) });
    const states = stateChanges();
    const app = expressGateway({ name: 'orders', target: up.url, retry: { minDelay: 1, maxDelay: 1 }, hooks: { onBreakerStateChange: states.hook } });

    for (let i = 0; i < 30; i += 1) {
      const response = await request(app).get('/api/x');
      expect((response.body as { code: string }).code).toBe('UPSTREAM_STATUS');
    }
    expect(states.changes).toStrictEqual([]);
    up.setFallback(faults.respond(200, 'ok'));
    expect((await request(app).get('/api/x')).text).toBe('ok');
  });

  it('answers 503 for CIRCUIT_OPEN with rfc9209Status', async () => {
    const up = await upstream({ fallback: faults.resetBeforeHeaders() });
    const app = gateway({ target: up.url, breaker: { ...strict, volumeThreshold: 1 }, status: rfc9209Status });
    await request(app).get('/api/x');
    const refused = await request(app).get('/api/x');
    expect([refused.status, (refused.body as { title: string }).title]).toStrictEqual([503, 'Service Unavailable']);
  });

  it('stays closed while the failure rate is under the threshold', async () => {
    const up = await upstream({ fallback: faults.respond(200, 'ok') });
    const states = stateChanges();
    const app = gateway({ target: up.url, breaker: { ...strict, errorThresholdPercentage: 50 }, hooks: { onBreakerStateChange: states.hook } });
    for (let i = 0; i < 10; i += 1) {
      if (i % 3 === 0) up.enqueue(faults.status(503));
      await request(app).get('/api/x');
    }
    expect(states.changes).toStrictEqual([]);
  });

  it('counts a request once, whatever its retries: a client retrying failures weighs one failure per request', async () => {
    const up = await upstream({ fallback: faults.status(503) });
    const states = stateChanges();
    const app = gateway({ target: up.url, retry: { retries: 5, minDelay: 1, maxDelay: 1, budget: false }, breaker: { ...strict, volumeThreshold: 2 }, hooks: { onBreakerStateChange: states.hook } });

    const first = await request(app).get('/api/x');
    expect(first.body).toMatchObject({ code: 'UPSTREAM_STATUS', attempts: 6 });
    expect(states.changes).toStrictEqual([]);

    await request(app).get('/api/x');
    expect(states.changes.map((c) => c.to)).toStrictEqual(['open']);
    expect(up.requests).toHaveLength(12);
  });

  it('an open circuit stops a retry loop at once', async () => {
    const up = await upstream({ fallback: faults.status(503) });
    const app = gateway({ target: up.url, retry: { retries: 10, minDelay: 50, maxDelay: 50, jitter: false, budget: false }, breaker: { ...strict, volumeThreshold: 1, errorThresholdPercentage: 10 } });
    const server = await listen(app);

    const retrying = request(server.url).get('/api/x').then((r) => r);
    await up.waitForRequests(2);
    // A POST is not retried: its one failure (of two requests) opens the circuit.
    await request(server.url).post('/api/x');
    const response = await retrying;

    expect((response.body as { code: string }).code).toBe('CIRCUIT_OPEN');
    expect((response.body as { attempts: number }).attempts).toBeLessThan(11);
  });
});

describe('half-open', () => {
  it('admits one probe while others fail fast, and closes when the probe succeeds', async () => {
    const up = await upstream({ fallback: faults.status(503) });
    const states = stateChanges();
    const app = gateway({ target: up.url, breaker: { ...strict, volumeThreshold: 1, resetTimeout: 100 }, hooks: { onBreakerStateChange: states.hook } });
    const server = await listen(app);

    await request(server.url).get('/api/x');
    await states.reach('halfOpen');
    const { behaviour, release } = gate();
    up.setFallback(behaviour);

    const probe = request(server.url).get('/api/x').then((r) => r);
    await up.waitForRequests(2);
    const others = await Promise.all(Array.from({ length: 5 }, () => request(server.url).get('/api/x')));
    expect(others.map((r) => (r.body as { code: string }).code)).toStrictEqual(Array(5).fill('CIRCUIT_OPEN'));
    expect(others.map((r) => r.headers['retry-after'])).toStrictEqual(Array(5).fill('1'));
    expect(up.requests).toHaveLength(2);

    release();
    expect((await probe).status).toBe(200);
    expect(states.changes.map((c) => c.to)).toStrictEqual(['open', 'halfOpen', 'closed']);
    expect((await request(server.url).get('/api/x')).status).toBe(200);
  });

  it('closes as soon as the probe\'s head reaches the client, while its body still streams', async () => {
    const up = await upstream({ fallback: faults.status(503) });
    const states = stateChanges();
    const app = gateway({ target: up.url, breaker: { ...strict, volumeThreshold: 1, resetTimeout: 100 }, hooks: { onBreakerStateChange: states.hook } });
    const server = await listen(app);

    await request(server.url).get('/api/x');
    await states.reach('halfOpen');
    let finish!: () => void;
    up.setFallback(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first ');
      finish = () => res.end('last');
    });

    const probe = request(server.url).get('/api/x').then((r) => r);
    await states.reach('closed');
    finish();
    expect((await probe).text).toBe('first last');
    expect(states.changes.map((c) => c.to)).toStrictEqual(['open', 'halfOpen', 'closed']);
  });

  it('re-opens when the probe fails', async () => {
    const up = await upstream({ fallback: faults.status(503) });
    const states = stateChanges();
    const app = gateway({ target: up.url, breaker: { ...strict, volumeThreshold: 1, resetTimeout: 100 }, hooks: { onBreakerStateChange: states.hook } });

    await request(app).get('/api/x');
    await states.reach('halfOpen');
    const probe = await request(app).get('/api/x');

    expect((probe.body as { code: string }).code).toBe('UPSTREAM_STATUS');
    expect(states.changes.map((c) => c.to)).toStrictEqual(['open', 'halfOpen', 'open']);
    const refused = await request(app).get('/api/x');
    expect((refused.body as { code: string }).code).toBe('CIRCUIT_OPEN');
    expect(up.requests).toHaveLength(2);
  });
});

describe('half-open probe (fake time)', () => {
  const settings = { errorThresholdPercentage: 50, volumeThreshold: 1, resetTimeout: 1_000, probeTimeout: 200, rollingCountTimeout: 10_000, capacity: 0 };
  const failing = (): Promise<string> => Promise.resolve('503');
  const isFailure = (outcome: string): boolean => outcome === '503';

  afterEach(() => {
    vi.useRealTimers();
  });

  it('a probe that never answers holds the circuit for probeTimeout at most, then the next request probes and closes it', async () => {
    vi.useFakeTimers();
    const breaker = new UpstreamBreaker('orders', settings);
    await breaker.run(failing, isFailure);
    expect(breaker.state).toBe('open');
    await vi.advanceTimersByTimeAsync(1_000);
    expect(breaker.state).toBe('halfOpen');

    let late!: (outcome: string) => void;
    const hanging = breaker.run(() => new Promise<string>((resolve) => (late = resolve)), isFailure);
    await vi.advanceTimersByTimeAsync(199);
    expect(breaker.refusal()).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(breaker.state).toBe('halfOpen');

    expect(await breaker.run(() => Promise.resolve('200'), isFailure)).toStrictEqual({ ran: true, outcome: '200' });
    expect(breaker.state).toBe('closed');
    // The first probe failing late decides nothing any more.
    late('503');
    expect(await hanging).toStrictEqual({ ran: true, outcome: '503' });
    expect(breaker.state).toBe('closed');
    breaker.shutdown();
  });

  it('a probe that fails re-opens the circuit', async () => {
    vi.useFakeTimers();
    const breaker = new UpstreamBreaker('orders', settings);
    await breaker.run(failing, isFailure);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(await breaker.run(failing, isFailure)).toStrictEqual({ ran: true, outcome: '503' });
    await vi.advanceTimersByTimeAsync(0);
    expect(breaker.state).toBe('open');
    expect(breaker.refusal()).toBe(1);
    breaker.shutdown();
  });

  it('a probe is decided by its response head, not by the end of its body', async () => {
    vi.useFakeTimers();
    const breaker = new UpstreamBreaker('orders', settings);
    await breaker.run(failing, isFailure);
    await vi.advanceTimersByTimeAsync(1_000);

    let finish!: (outcome: string) => void;
    const probe = breaker.run((headed) => {
      headed();
      return new Promise<string>((resolve) => (finish = resolve));
    }, isFailure);
    await vi.advanceTimersByTimeAsync(0);
    expect(breaker.state).toBe('closed');

    await vi.advanceTimersByTimeAsync(60_000);
    finish('200');
    expect(await probe).toStrictEqual({ ran: true, outcome: '200' });
    expect(breaker.state).toBe('closed');
    breaker.shutdown();
  });
});

describe('the concurrency limit', () => {
  it('answers UPSTREAM_OVERLOADED past capacity without calling the upstream', async () => {
    const { behaviour, release } = gate();
    const up = await upstream({ fallback: behaviour });
    const server = await listen(gateway({ target: up.url, breaker: { capacity: 2 } }));

    const first = request(server.url).get('/api/x').then((r) => r);
    const second = request(server.url).get('/api/x').then((r) => r);
    await up.waitForRequests(2);
    const third = await request(server.url).get('/api/x').set('x-request-id', 'r3');

    expect(third.status).toBe(502);
    expect(third.headers['proxy-status']).toBe('resilient-proxy; error=connection_limit_reached');
    expect(third.headers['retry-after']).toBeUndefined();
    expect(third.body).toStrictEqual({
      type: 'about:blank',
      title: 'Bad Gateway',
      status: 502,
      detail: 'Too many requests are in flight to the upstream service.',
      code: 'UPSTREAM_OVERLOADED',
      upstream: 'orders',
      attempts: 0,
      requestId: 'r3',
    });
    expect(up.requests).toHaveLength(2);

    release();
    expect([(await first).status, (await second).status]).toStrictEqual([200, 200]);
    expect((await request(server.url).get('/api/x')).status).toBe(200);
  });
});

describe('sharing and inspection', () => {
  it('two proxies to the same upstream share one breaker', async () => {
    const up = await upstream({ fallback: faults.status(503) });
    const registry = testRegistry();
    const app = express();
    const breaker = { ...strict, volumeThreshold: 2 };
    app.use('/a', proxy({ target: up.url, name: 'orders', retry: false, breaker, registry }));
    app.use('/b', proxy({ target: up.url, name: 'orders', retry: false, breaker, registry }));

    await request(app).get('/a/x');
    await request(app).get('/a/x');
    const viaB = await request(app).get('/b/x');

    expect((viaB.body as { code: string }).code).toBe('CIRCUIT_OPEN');
    expect(up.requests).toHaveLength(2);
    expect(registry.get('orders')).toMatchObject({ upstream: 'orders', state: 'open', stats: { failures: 2, rejects: 1 } });
  });

  it('exposes every upstream for a health endpoint', async () => {
    const up = await upstream();
    const registry = testRegistry();
    const app = express();
    app.use('/orders', proxy({ target: up.url, name: 'orders', registry, breaker: { capacity: 10 } }));
    app.use('/billing', proxy({ target: up.url, name: 'billing', registry, breaker: false }));
    app.get('/health', (_req, res) => {
      const upstreams = registry.snapshot();
      res.status(upstreams.some((u) => u.state === 'open') ? 503 : 200).json(upstreams);
    });

    await request(app).get('/orders/x');
    const health = await request(app).get('/health');
    const quiet = { origin: up.url, url: up.url, weight: 1, state: 'healthy', inFlight: 0, ejections: 0, consecutiveFailures: 0, lastFailure: null, ejectedUntil: null };

    expect(health.status).toBe(200);
    expect(health.body).toStrictEqual([
      {
        upstream: 'orders',
        state: 'closed',
        inFlight: 0,
        capacity: 10,
        overloaded: 0,
        tunnels: 0,
        stats: { fires: 1, successes: 1, failures: 0, rejects: 0 },
        hosts: [{ ...quiet, latencyMs: expect.any(Number) as unknown }],
        panic: false,
        panics: 0,
        discovery: null,
      },
      { upstream: 'billing', state: 'disabled', inFlight: 0, capacity: null, overloaded: 0, tunnels: 0, stats: null, hosts: [{ ...quiet, latencyMs: null }], panic: false, panics: 0, discovery: null },
    ]);
  });
});

describe('what never counts against the upstream', () => {
  it('client aborts', async () => {
    const up = await upstream({ fallback: faults.hang() });
    const registry = testRegistry();
    const server = await listen(expressGateway({ target: up.url, name: 'orders', registry, breaker: { ...strict, volumeThreshold: 3 } }));

    for (let i = 1; i <= 5; i += 1) {
      const client = httpRequest(`${server.url}/api/x`, { agent: false });
      client.on('error', () => undefined);
      client.end();
      await up.waitForRequests(i);
      client.destroy();
      await up.requests[i - 1]?.closed;
    }

    expect(registry.get('orders')).toMatchObject({ state: 'closed', stats: { failures: 0 } });
  });

  it('4xx answers', async () => {
    const up = await upstream({ fallback: faults.respond(404, 'no such order') });
    const registry = testRegistry();
    const app = expressGateway({ target: up.url, name: 'orders', registry, breaker: { ...strict, volumeThreshold: 3 } });

    for (let i = 0; i < 6; i += 1) expect((await request(app).get('/api/x')).status).toBe(404);

    expect(registry.get('orders')).toMatchObject({ state: 'closed', stats: { failures: 0, successes: 6 } });
  });
});

describe('breaker: false', () => {
  it('calls the upstream however often it fails', async () => {
    const up = await upstream({ fallback: faults.status(503) });
    const app = gateway({ target: up.url, breaker: false });
    for (let i = 0; i < 30; i += 1) await request(app).get('/api/x');
    expect(up.requests).toHaveLength(30);
  });
});

// Retries end to end against real upstreams on loopback: what is retried, how
// often, with which body, and what stops it.

import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import express from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import type { RetryEvent } from '../src/index.js';
import { faults, refusedUrl, unreachableDispatcher } from '../src/testing/index.js';
import { expressGateway, listen, onCleanup, rawGet, upstream } from './support.js';

const fast = { minDelay: 1, maxDelay: 5 };

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function collectRetries(): { events: RetryEvent[]; onRetry: (event: RetryEvent) => void } {
  const events: RetryEvent[] = [];
  return { events, onRetry: (event) => events.push(event) };
}

describe('idempotent requests', () => {
  it('a GET that fails twice then succeeds returns the upstream 200, and the upstream sees the attempt number', async () => {
    const up = await upstream({ fallback: faults.respond(200, 'third time lucky') });
    up.enqueue(faults.resetBeforeHeaders(), faults.status(503));
    const retries = collectRetries();
    const app = expressGateway({ target: up.url, retry: fast, hooks: { onRetry: retries.onRetry } });

    const response = await request(app).get('/api/orders').set('x-request-id', 'r1');

    expect(response.status).toBe(200);
    expect(response.text).toBe('third time lucky');
    expect(up.requests.map((r) => r.headers['x-attempt-count'])).toStrictEqual(['1', '2', '3']);
    expect(up.requests.map((r) => r.headers['x-request-id'])).toStrictEqual(['r1', 'r1', 'r1']);
    expect(retries.events.map(({ code, attempt, receivedStatus, requestId }) => ({ code, attempt, receivedStatus, requestId }))).toStrictEqual([
      { code: 'UPSTREAM_RESET', attempt: 1, receivedStatus: null, requestId: 'r1' },
      { code: 'UPSTREAM_STATUS', attempt: 2, receivedStatus: 503, requestId: 'r1' },
    ]);
    for (const event of retries.events) {
      expect(event.delay).toBeGreaterThanOrEqual(0);
      expect(event.delay).toBeLessThanOrEqual(5);
    }
  });

  it('gives up after `retries` and reports the real number of attempts', async () => {
    const up = await upstream({ fallback: faults.status(502) });
    const response = await request(expressGateway({ target: up.url, name: 'orders', retry: { ...fast, retries: 4 } })).get('/api/x');

    expect(response.status).toBe(502);
    expect(response.body).toMatchObject({ code: 'UPSTREAM_STATUS', attempts: 5 });
    expect(up.requests).toHaveLength(5);
  });

  it('a PUT body of 100 KiB arrives byte-identical on every attempt', async () => {
    const body = Buffer.alloc(100 * 1024);
    for (let i = 0; i < body.length; i += 1) body[i] = (i * 7919) % 251;
    const up = await upstream({ fallback: faults.respond(200, 'stored') });
    up.enqueue(faults.resetBeforeHeaders(), faults.closeBeforeHeaders());

    const response = await request(expressGateway({ target: up.url, retry: fast })).put('/api/blob').set('content-type', 'application/octet-stream').send(body);

    expect(response.status).toBe(200);
    expect(up.requests.map((r) => r.bodySha256)).toStrictEqual([sha256(body), sha256(body), sha256(body)]);
    expect(up.requests.map((r) => r.headers['content-length'])).toStrictEqual(['102400', '102400', '102400']);
  });

  it('a body parsed by express.json() is forwarded intact on every attempt', async () => {
    const up = await upstream({ fallback: faults.respond(200, 'ok') });
    up.enqueue(faults.status(503));
    const app = expressGateway({ target: up.url, retry: fast }, (app) => app.use(express.json()));

    const response = await request(app).put('/api/orders/7').send({ qty: 3, note: 'ünïcode' });

    expect(response.status).toBe(200);
    const expected = JSON.stringify({ qty: 3, note: 'ünïcode' });
    expect(up.requests.map((r) => r.body.toString('utf8'))).toStrictEqual([expected, expected]);
    expect(up.requests.map((r) => r.headers['content-length'])).toStrictEqual([String(Buffer.byteLength(expected)), String(Buffer.byteLength(expected))]);
  });

  it('a body over maxBodyBytes streams through and is not retried', async () => {
    const up = await upstream({ fallback: faults.resetBeforeHeaders() });
    const body = Buffer.alloc(4096, 'b');

    const response = await request(expressGateway({ target: up.url, retry: { ...fast, maxBodyBytes: 1024 } }))
      .put('/api/blob')
      .set('content-type', 'application/octet-stream')
      .send(body);

    expect(response.status).toBe(502);
    expect(response.body).toMatchObject({ code: 'UPSTREAM_RESET', attempts: 1 });
    expect(up.requests).toHaveLength(1);
    expect(up.requests[0]?.bodySha256).toBe(sha256(body));
  });

  it('nothing is retried once the response has started', async () => {
    const up = await upstream({ fallback: faults.closeMidBody(1000, 10) });
    const gateway = await listen(expressGateway({ target: up.url, retry: fast }));

    const result = await rawGet(`${gateway.url}/api/file`);

    expect(result.ending).toBe('truncated');
    expect(up.requests).toHaveLength(1);
  });
});

describe('non-idempotent requests', () => {
  it('a POST whose upstream reset after reading it is not retried: the upstream saw it once', async () => {
    const up = await upstream({ fallback: faults.resetBeforeHeaders() });
    const retries = collectRetries();

    const response = await request(expressGateway({ target: up.url, name: 'orders', retry: fast, hooks: { onRetry: retries.onRetry } }))
      .post('/api/payments')
      .send({ amount: 100 });

    expect(response.status).toBe(502);
    expect(response.body).toMatchObject({ code: 'UPSTREAM_RESET', attempts: 1 });
    expect(up.requests).toHaveLength(1);
    expect(retries.events).toStrictEqual([]);
  });

  it.each([
    { name: 'a POST upstream answering 503', behaviour: faults.status(503) },
    { name: 'a PATCH upstream that never answers', behaviour: faults.hang(), method: 'patch' as const },
  ])('$name is not retried', async ({ behaviour, method = 'post' }) => {
    const up = await upstream({ fallback: behaviour });
    const agent = request(expressGateway({ target: up.url, retry: fast, timeout: { response: 50 } }));
    const response = await (method === 'patch' ? agent.patch('/api/x') : agent.post('/api/x')).send({ a: 1 });
    expect(response.status).toBe(502);
    expect((response.body as { attempts: number }).attempts).toBe(1);
    expect(up.requests).toHaveLength(1);
  });

  it('a POST to a refused port is retried: no byte reached the upstream', async () => {
    const retries = collectRetries();
    const response = await request(expressGateway({ target: await refusedUrl(), retry: fast, hooks: { onRetry: retries.onRetry } }))
      .post('/api/payments')
      .send({ amount: 100 });

    expect(response.body).toMatchObject({ code: 'UPSTREAM_CONNECT_REFUSED', attempts: 3 });
    expect(retries.events.map((e) => [e.code, e.phase, e.method])).toStrictEqual([
      ['UPSTREAM_CONNECT_REFUSED', 'connect', 'POST'],
      ['UPSTREAM_CONNECT_REFUSED', 'connect', 'POST'],
    ]);
  });

  it('a POST to an unreachable host is retried', async () => {
    const dispatcher = unreachableDispatcher('EHOSTUNREACH');
    onCleanup(() => dispatcher.destroy());
    const response = await request(expressGateway({ target: 'http://orders.test', dispatcher, retry: fast })).post('/api/x').send('a');
    expect(response.body).toMatchObject({ code: 'UPSTREAM_UNREACHABLE', attempts: 3 });
  });
});

describe('Retry-After', () => {
  it('honours delay-seconds that fit: waits as asked, then succeeds', async () => {
    const up = await upstream({ fallback: faults.respond(200, 'back') });
    up.enqueue(faults.status(503, { retryAfter: 1 }));
    const retries = collectRetries();

    const response = await request(expressGateway({ target: up.url, retry: fast, timeout: { total: 5000 }, hooks: { onRetry: retries.onRetry } })).get('/api/x');

    expect(response.status).toBe(200);
    expect(response.text).toBe('back');
    expect(retries.events.map((e) => e.delay)).toStrictEqual([1000]);
  });

  it('honours an HTTP date that fits', async () => {
    const up = await upstream({ fallback: faults.respond(200, 'back') });
    up.enqueue(faults.status(503, { retryAfter: new Date(Date.now() + 2000).toUTCString() }));
    const retries = collectRetries();

    const response = await request(expressGateway({ target: up.url, retry: fast, timeout: { total: 5000 }, hooks: { onRetry: retries.onRetry } })).get('/api/x');

    expect(response.status).toBe(200);
    expect(retries.events).toHaveLength(1);
    expect(retries.events[0]?.delay).toBeGreaterThan(0);
    expect(retries.events[0]?.delay).toBeLessThanOrEqual(2000);
  });

  it('fails at once, passing Retry-After on, when the wait does not fit the deadline', async () => {
    const up = await upstream({ fallback: faults.status(503, { retryAfter: 5 }) });

    const response = await request(expressGateway({ target: up.url, retry: fast, timeout: { total: 2000 } })).get('/api/x');

    expect(response.status).toBe(502);
    expect(response.headers['retry-after']).toBe('5');
    expect(response.body).toMatchObject({ code: 'UPSTREAM_STATUS', attempts: 1 });
    expect(up.requests).toHaveLength(1);
  });
});

describe('what stops retries', () => {
  it('the deadline: no backoff wait that would end past it', async () => {
    const up = await upstream({ fallback: faults.hang() });
    const retry = { retries: 5, minDelay: 300, maxDelay: 300, jitter: false };

    const response = await request(expressGateway({ target: up.url, retry, timeout: { response: 100, total: 350 } })).get('/api/x');

    // The first attempt times out at ~100 ms; waiting 300 ms would pass the 350 ms deadline.
    expect(response.body).toMatchObject({ code: 'UPSTREAM_RESPONSE_TIMEOUT', attempts: 1 });
    expect(up.requests).toHaveLength(1);
  });

  it('the deadline: an attempt running when it passes is the last one', async () => {
    const up = await upstream({ fallback: faults.hang() });

    const response = await request(expressGateway({ target: up.url, retry: { retries: 5, minDelay: 1, maxDelay: 1 }, timeout: { response: 1000, total: 150 } })).get('/api/x');

    expect(response.body).toMatchObject({ code: 'UPSTREAM_RESPONSE_TIMEOUT', attempts: 1 });
  });

  it('a client that disconnects during the backoff: no further attempt', async () => {
    const up = await upstream({ fallback: faults.status(503) });
    const clients: ReturnType<typeof httpRequest>[] = [];
    const gateway = await listen(
      expressGateway({
        target: up.url,
        retry: { retries: 3, minDelay: 150, maxDelay: 150, jitter: false },
        hooks: { onRetry: () => clients.forEach((c) => c.destroy()) },
      }),
    );

    const client = httpRequest(`${gateway.url}/api/x`, { agent: false });
    clients.push(client);
    client.on('error', () => undefined);
    client.end();
    await up.waitForRequests(1);
    // Twice the backoff: a second attempt, had one been made, would have arrived.
    await delay(300);

    expect(up.requests).toHaveLength(1);
  });

  it('retry: false makes one attempt', async () => {
    const up = await upstream({ fallback: faults.status(503) });
    const response = await request(expressGateway({ target: up.url, retry: false })).get('/api/x');
    expect(response.body).toMatchObject({ code: 'UPSTREAM_STATUS', attempts: 1 });
    expect(up.requests[0]?.headers['x-attempt-count']).toBeUndefined();
  });
});

describe('the retry budget', () => {
  async function outage(budget: false | { maxTokens: number }) {
    const up = await upstream({ fallback: faults.status(503) });
    // The breaker would refuse calls too; switch it off to measure the budget alone.
    const app = expressGateway({ target: up.url, retry: { ...fast, budget }, breaker: false });
    const gateway = await listen(app);
    const clients = 200;
    for (let sent = 0; sent < clients; sent += 20) {
      await Promise.all(Array.from({ length: 20 }, () => request(gateway.url).get('/api/x').expect(502)));
    }
    return up.requests.length - clients;
  }

  it('under a total outage, retries stop once half the bucket is drained: at most maxTokens / 2 retries in all', async () => {
    // 200 failing requests: without throttling, two retries each.
    expect(await outage(false)).toBe(400);
    const retries = await outage({ maxTokens: 10 });
    expect(retries).toBeGreaterThan(0);
    expect(retries).toBeLessThanOrEqual(5);
  });
});

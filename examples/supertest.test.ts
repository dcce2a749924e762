// A user's own test: how does *my* app behave when the orders service
// refuses, hangs, resets, or answers 503 and then recovers? The scripted
// upstreams of `resilient-proxy/testing` produce each case on loopback.
// Run: npx vitest run examples/supertest.test.ts

import express from 'express';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { createProxy, UpstreamRegistry, type ResilientProxy } from 'resilient-proxy';
import { faults, refusedUrl, startFaultUpstream, type FaultUpstream } from 'resilient-proxy/testing';

// The app under test: an Express app that proxies /api/orders to the orders service.
function buildApp(ordersUrl: string): { app: express.Express; proxy: ResilientProxy; registry: UpstreamRegistry } {
  const registry = new UpstreamRegistry();
  const proxy = createProxy({
    target: ordersUrl,
    name: 'orders',
    timeout: { response: 200 },
    retry: { minDelay: 10, maxDelay: 50 },
    registry,
  });
  const app = express();
  app.use('/api/orders', proxy);
  return { app, proxy, registry };
}

const opened: { close(): unknown }[] = [];
afterEach(async () => {
  for (const thing of opened.splice(0)) await thing.close();
});

async function orders(...script: Parameters<FaultUpstream['enqueue']>): Promise<FaultUpstream> {
  const upstream = await startFaultUpstream({ fallback: faults.respond(200, '{"id":7}', { 'content-type': 'application/json' }) });
  upstream.enqueue(...script);
  opened.push(upstream);
  return upstream;
}

function app(url: string): express.Express {
  const built = buildApp(url);
  opened.push(built.proxy, built.registry);
  return built.app;
}

describe('my gateway when the orders service misbehaves', () => {
  it('refuses connections: 502 with a stable code my clients can branch on', async () => {
    const response = await request(app(await refusedUrl())).get('/api/orders/7');

    expect(response.status).toBe(502);
    expect(response.headers['content-type']).toBe('application/problem+json');
    expect(response.body).toMatchObject({ code: 'UPSTREAM_CONNECT_REFUSED', upstream: 'orders' });
  });

  it('hangs: my client gets a 502 after my 200 ms response timeout, not a hang, and the hung host is not asked again', async () => {
    const upstream = await orders(faults.hang());

    const response = await request(app(upstream.url)).get('/api/orders/7');

    expect(response.status).toBe(502);
    expect(response.body).toMatchObject({ code: 'UPSTREAM_RESPONSE_TIMEOUT', attempts: 1 });
    expect(upstream.requests).toHaveLength(1);
  });

  it('resets the connection once: a GET is retried and succeeds', async () => {
    const upstream = await orders(faults.resetBeforeHeaders());

    const response = await request(app(upstream.url)).get('/api/orders/7');

    expect(response.status).toBe(200);
    expect(response.body).toStrictEqual({ id: 7 });
    expect(upstream.requests).toHaveLength(2);
  });

  it('resets the connection after reading a POST: it is not sent twice', async () => {
    const upstream = await orders(faults.resetBeforeHeaders());

    const response = await request(app(upstream.url)).post('/api/orders').send({ item: 'book' });

    expect(response.status).toBe(502);
    expect(response.body).toMatchObject({ code: 'UPSTREAM_RESET', attempts: 1 });
    expect(upstream.requests).toHaveLength(1);
  });

  it('answers 503 and then recovers: my client only sees the 200', async () => {
    const upstream = await orders(faults.status(503));

    const response = await request(app(upstream.url)).get('/api/orders/7');

    expect(response.status).toBe(200);
    expect(upstream.requests.map((r) => r.headers['x-attempt-count'])).toStrictEqual(['1', '2']);
  });
});

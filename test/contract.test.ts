// The error contract, class by class: for every failure the client gets the
// same status, headers and body shape, with the class's own code and
// Proxy-Status error type, and no internal detail.

import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { faults, refusedUrl } from '../src/testing/index.js';
import { cases, expectContract } from './cases.js';
import { expressGateway, upstream } from './support.js';

describe('the 502 contract, for every failure class', () => {
  it.each(cases)('$name → $code', async ({ code, proxyStatus, setup, timeout, attempts = 3 }) => {
    const { target, dispatcher } = await setup();
    const retry = { minDelay: 1, maxDelay: 1 };
    const app = expressGateway({ target, name: 'orders', retry, ...(dispatcher && { dispatcher }), ...(timeout && { timeout }) });

    const response = await request(app).get('/api/items?page=2').set('x-request-id', 'req-42');

    expectContract(response, code, `resilient-proxy; error=${proxyStatus}`, { attempts });
  });

  it('UPSTREAM_STATUS: an upstream 503 is answered with the contract, its status and its Retry-After', async () => {
    const { url } = await upstream({ fallback: faults.status(503, { retryAfter: 7 }) });
    const app = expressGateway({ target: url, name: 'orders' });

    const response = await request(app).get('/api/items').set('x-request-id', 'req-42');

    // Retry-After: 7 s is longer than the proxy waits without a deadline: it fails at once.
    expectContract(response, 'UPSTREAM_STATUS', 'resilient-proxy; received-status=503');
    expect(response.headers['retry-after']).toBe('7');
  });

  it('UPSTREAM_STATUS: the failure body is read and dropped, so the upstream connection is reused', async () => {
    const up = await upstream({ fallback: faults.status(503) });
    const app = expressGateway({ target: up.url, name: 'orders', retry: false });

    for (let i = 0; i < 3; i += 1) {
      const response = await request(app).get('/api/items').set('x-request-id', 'req-42');
      expectContract(response, 'UPSTREAM_STATUS', 'resilient-proxy; received-status=503');
    }
    expect(up.requests).toHaveLength(3);
    expect(up.connections).toBe(1);
  });

  it('UPSTREAM_STATUS: a failure status with a huge body is answered without reading it all', async () => {
    const up = await upstream({ fallback: faults.respond(503, Buffer.alloc(4 * 1024 * 1024, 'e')) });
    const response = await request(expressGateway({ target: up.url, name: 'orders', retry: false })).get('/api/items').set('x-request-id', 'req-42');
    expectContract(response, 'UPSTREAM_STATUS', 'resilient-proxy; received-status=503');
  });

  it('PROXY_INTERNAL_ERROR: a body consumed by an earlier middleware that kept nothing', async () => {
    const { url, requests } = await upstream();
    const app = expressGateway({ target: url, name: 'orders' }, (app) => {
      app.use((req, _res, next) => {
        req.resume();
        req.once('end', () => next());
      });
    });

    const response = await request(app).post('/api/items').set('x-request-id', 'req-42').set('content-type', 'application/octet-stream').send(Buffer.from('payload'));

    expectContract(response, 'PROXY_INTERNAL_ERROR', 'resilient-proxy; error=proxy_internal_error', { attempts: 0 });
    expect(requests).toHaveLength(0);
  });

  it('omits `upstream` from the body when the proxy has no name, so no address reaches the client', async () => {
    const target = await refusedUrl();
    const app = expressGateway({ target });

    const response = await request(app).get('/api/x').set('x-request-id', 'req-42');

    expect(response.status).toBe(502);
    expect(response.body).toStrictEqual({
      type: 'about:blank',
      title: 'Bad Gateway',
      status: 502,
      detail: 'The upstream service refused the connection.',
      code: 'UPSTREAM_CONNECT_REFUSED',
      attempts: 3,
      requestId: 'req-42',
    });
    const port = new URL(target).port;
    expect(JSON.stringify(response.headers) + response.text).not.toContain(port);
    expect(response.text).not.toContain('127.0.0.1');
  });
});

describe('nothing internal reaches the client', () => {
  it.each(cases)('$code ($name): no host, address, port, error message or stack in the body or headers', async ({ setup, timeout, name }) => {
    const { target, dispatcher } = await setup();
    const errors: unknown[] = [];
    const app = expressGateway({
      target,
      retry: false,
      hooks: { onFailure: (event) => errors.push(event.error) },
      ...(dispatcher && { dispatcher }),
      ...(timeout && { timeout }),
    });

    const response = await request(app).get('/api/items').set('accept', name.length % 2 === 0 ? 'text/html' : 'application/json');

    const exposed = JSON.stringify(response.headers) + response.text;
    const { hostname, port } = new URL(target);
    expect(exposed).not.toContain(hostname);
    if (port !== '') expect(exposed).not.toContain(`:${port}`);
    expect(exposed).not.toMatch(/\b(?:\d{1,3}\.){3}\d{1,3}\b/);
    expect(exposed).not.toMatch(/\bat \S+ \(|node:internal|\.ts:\d+/);
    // errno names (ECONNREFUSED…) and Node's, undici's and llhttp's own codes.
    expect(exposed).not.toMatch(/\bE[A-Z]{4,}\b|\bERR_[A-Z_]+|UND_ERR|HPE_|getaddrinfo|socket hang up/);
    for (const error of errors) {
      const message = (error as { message?: unknown } | null)?.message;
      if (typeof message === 'string' && message.length > 0) expect(exposed).not.toContain(message);
    }
  });
});

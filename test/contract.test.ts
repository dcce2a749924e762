// The error contract, class by class: for every failure the client gets the
// same status, headers and body shape, with the class's own code and
// Proxy-Status error type, and no internal detail.

import { readFileSync } from 'node:fs';
import request from 'supertest';
import type { Dispatcher } from 'undici';
import { describe, expect, it } from 'vitest';
import { FAILURES, type FailureCode } from '../src/index.js';
import {
  connectHangDispatcher,
  dnsFailureDispatcher,
  faults,
  refusedUrl,
  unreachableDispatcher,
  type Behaviour,
} from '../src/testing/index.js';
import { expressGateway, onCleanup, upstream } from './support.js';

const tls = {
  key: readFileSync(new URL('./fixtures/self-signed.key', import.meta.url)),
  cert: readFileSync(new URL('./fixtures/self-signed.crt', import.meta.url)),
};

interface Case {
  readonly name: string;
  readonly code: FailureCode;
  readonly proxyStatus: string;
  readonly setup: () => { target: string; dispatcher?: Dispatcher } | Promise<{ target: string; dispatcher?: Dispatcher }>;
  readonly timeout?: { connect?: number; response?: number; idle?: number; total?: number };
  /** Attempts a GET gets under the default retry policy. */
  readonly attempts?: number;
}

function withDispatcher(dispatcher: Dispatcher): { target: string; dispatcher: Dispatcher } {
  onCleanup(() => dispatcher.destroy());
  // The name is never resolved: the dispatcher fails before any lookup or connect.
  return { target: 'http://orders.test:8080', dispatcher };
}

function behaving(behaviour: Behaviour) {
  return async () => ({ target: (await upstream({ fallback: behaviour })).url });
}

const cases: Case[] = [
  { name: 'a name that does not resolve', code: 'UPSTREAM_DNS_FAILED', proxyStatus: 'dns_error', setup: () => withDispatcher(dnsFailureDispatcher('ENOTFOUND')) },
  { name: 'a resolver that fails', code: 'UPSTREAM_DNS_FAILED', proxyStatus: 'dns_timeout', setup: () => withDispatcher(dnsFailureDispatcher('EAI_AGAIN')) },
  { name: 'no route to the host', code: 'UPSTREAM_UNREACHABLE', proxyStatus: 'destination_ip_unroutable', setup: () => withDispatcher(unreachableDispatcher('EHOSTUNREACH')) },
  { name: 'a network that is unreachable', code: 'UPSTREAM_UNREACHABLE', proxyStatus: 'destination_ip_unroutable', setup: () => withDispatcher(unreachableDispatcher('ENETUNREACH')) },
  { name: 'a destination the system forbids', code: 'UPSTREAM_UNREACHABLE', proxyStatus: 'destination_ip_prohibited', setup: () => withDispatcher(unreachableDispatcher('EACCES')) },
  { name: 'a closed port', code: 'UPSTREAM_CONNECT_REFUSED', proxyStatus: 'connection_refused', setup: async () => ({ target: await refusedUrl() }) },
  { name: 'a connect that never completes', code: 'UPSTREAM_CONNECT_TIMEOUT', proxyStatus: 'connection_timeout', setup: () => withDispatcher(connectHangDispatcher()), timeout: { connect: 100 } },
  { name: 'a self-signed certificate', code: 'UPSTREAM_TLS_FAILED', proxyStatus: 'tls_certificate_error', setup: async () => ({ target: (await upstream({ tls })).url }), attempts: 1 },
  { name: 'a reset after the request was read', code: 'UPSTREAM_RESET', proxyStatus: 'connection_terminated', setup: behaving(faults.resetBeforeHeaders()) },
  { name: 'a clean close before headers', code: 'UPSTREAM_RESET', proxyStatus: 'connection_terminated', setup: behaving(faults.closeBeforeHeaders()) },
  { name: 'an upstream that never answers', code: 'UPSTREAM_RESPONSE_TIMEOUT', proxyStatus: 'http_response_timeout', setup: behaving(faults.hang()), timeout: { response: 100 } },
  { name: 'the total deadline before headers', code: 'UPSTREAM_RESPONSE_TIMEOUT', proxyStatus: 'http_response_timeout', setup: behaving(faults.hang()), timeout: { total: 100 }, attempts: 1 },
  { name: 'a malformed status line', code: 'UPSTREAM_BAD_RESPONSE', proxyStatus: 'http_protocol_error', setup: behaving(faults.malformedStatusLine()) },
  { name: 'a header section over the limit', code: 'UPSTREAM_BAD_RESPONSE', proxyStatus: 'http_response_header_section_size', setup: behaving(faults.oversizedHeaders()) },
];

function expectContract(
  response: request.Response,
  code: FailureCode,
  proxyStatus: string,
  extra: { status?: number; title?: string; attempts?: number } = {},
): void {
  const status = extra.status ?? 502;
  const body = {
    type: 'about:blank',
    title: extra.title ?? 'Bad Gateway',
    status,
    detail: FAILURES[code].detail,
    code,
    upstream: 'orders',
    attempts: extra.attempts ?? 1,
    requestId: 'req-42',
  };
  expect(response.status).toBe(status);
  expect(response.headers['content-type']).toBe('application/problem+json');
  expect(response.headers['cache-control']).toBe('no-store');
  expect(response.headers['proxy-status']).toBe(proxyStatus);
  expect(response.headers['x-request-id']).toBe('req-42');
  expect(response.headers['content-length']).toBe(String(Buffer.byteLength(JSON.stringify(body))));
  expect(JSON.parse(response.text)).toStrictEqual(body);
}

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

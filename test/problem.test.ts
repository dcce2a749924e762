// The error response in its variants: content negotiation, HEAD, the `status`
// option, hooks that throw, and request targets that cannot be forwarded.

import { connect } from 'node:net';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { rfc9209Status } from '../src/index.js';
import { faults, refusedUrl } from '../src/testing/index.js';
import { expressGateway, listen, proxy, upstream } from './support.js';

describe('content negotiation', () => {
  it('answers a browser with the same fields as HTML, escaped', async () => {
    const app = expressGateway({ target: await refusedUrl(), name: 'orders' });
    const response = await request(app).get('/api/x').set('accept', 'text/html,application/xhtml+xml,*/*;q=0.8').set('x-request-id', '<script>');

    expect(response.status).toBe(502);
    expect(response.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(response.headers.vary).toBe('Accept');
    expect(response.text).toContain('<dt>code</dt><dd>UPSTREAM_CONNECT_REFUSED</dd>');
    expect(response.text).toContain('<dt>requestId</dt><dd>&#60;script&#62;</dd>');
    expect(response.text).not.toContain('<script>');
  });

  it('answers a text-only client with the same fields as plain text', async () => {
    const app = expressGateway({ target: await refusedUrl(), name: 'orders' });
    const response = await request(app).get('/api/x').set('accept', 'text/plain').set('x-request-id', 'r1');

    expect(response.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(response.text).toBe(
      'title: Bad Gateway\nstatus: 502\ndetail: The upstream service refused the connection.\ncode: UPSTREAM_CONNECT_REFUSED\nupstream: orders\nattempts: 3\nrequestId: r1\n',
    );
  });

  it('answers problem+json to clients that accept JSON or anything', async () => {
    const app = expressGateway({ target: await refusedUrl() });
    for (const accept of ['application/json', '*/*', 'application/problem+json', 'text/html;q=0.5, application/json', 'image/png']) {
      const response = await request(app).get('/api/x').set('accept', accept);
      expect(response.headers['content-type'], accept).toBe('application/problem+json');
    }
  });
});

describe('HEAD', () => {
  it('gets every header of the contract and no body', async () => {
    const app = expressGateway({ target: await refusedUrl(), name: 'orders' });
    const response = await request(app).head('/api/x').set('x-request-id', 'r1');

    expect(response.status).toBe(502);
    expect(response.headers['content-type']).toBe('application/problem+json');
    expect(response.headers['proxy-status']).toBe('resilient-proxy; error=connection_refused');
    expect(response.headers['x-request-id']).toBe('r1');
    expect(response.text).toBeUndefined();
  });
});

describe('the status option', () => {
  it('takes a fixed status', async () => {
    const response = await request(expressGateway({ target: await refusedUrl(), status: 503 })).get('/api/x');
    expect(response.status).toBe(503);
    expect((response.body as { title: string; status: number }).title).toBe('Service Unavailable');
    expect((response.body as { status: number }).status).toBe(503);
  });

  it('follows RFC 9209 with rfc9209Status: 504 for timeouts, 502 for a refusal', async () => {
    const hanging = await upstream({ fallback: faults.hang() });
    const timedOut = await request(expressGateway({ target: hanging.url, status: rfc9209Status, timeout: { response: 50 } })).get('/api/x');
    const refused = await request(expressGateway({ target: await refusedUrl(), status: rfc9209Status })).get('/api/x');

    expect([timedOut.status, (timedOut.body as { title: string }).title]).toStrictEqual([504, 'Gateway Timeout']);
    expect(refused.status).toBe(502);
  });

  it('turns a status function that throws into PROXY_INTERNAL_ERROR with 500', async () => {
    const status = () => {
      throw new Error('bug in user code');
    };
    const response = await request(expressGateway({ target: await refusedUrl(), status })).get('/api/x');

    expect(response.status).toBe(500);
    expect(response.headers['proxy-status']).toBe('resilient-proxy; error=proxy_internal_error');
    expect((response.body as { code: string }).code).toBe('PROXY_INTERNAL_ERROR');
    expect(response.text).not.toContain('bug in user code');
  });

  it('uses the proxy name given in Proxy-Status', async () => {
    const response = await request(expressGateway({ target: await refusedUrl(), proxyName: 'edge-gw' })).get('/api/x');
    expect(response.headers['proxy-status']).toBe('edge-gw; error=connection_refused');
  });
});

describe('hooks', () => {
  it('a hook that throws never breaks the response, and is reported once as a process warning', async () => {
    const onFailure = () => {
      throw new Error('logging is down');
    };
    const warnings: Error[] = [];
    const collect = (warning: Error): void => {
      warnings.push(warning);
    };
    process.on('warning', collect);
    const app = expressGateway({ target: await refusedUrl(), hooks: { onFailure } });

    const first = await request(app).get('/api/x');
    const second = await request(app).get('/api/x');
    await new Promise((resolve) => setImmediate(resolve));
    process.off('warning', collect);

    expect([first.status, second.status]).toStrictEqual([502, 502]);
    expect((first.body as { code: string }).code).toBe('UPSTREAM_CONNECT_REFUSED');
    expect(warnings.map((w) => [(w as Error & { code?: string }).code, w.message])).toStrictEqual([
      ['RESILIENT_PROXY_HOOK_ERROR', 'A resilient-proxy hook threw; it is ignored: Error: logging is down'],
    ]);
  });

  it('onFailure gets the internal detail that the client never sees', async () => {
    const target = await refusedUrl();
    const events: unknown[] = [];
    await request(expressGateway({ target, name: 'orders', hooks: { onFailure: (e) => events.push(e) } }))
      .get('/api/items')
      .set('x-request-id', 'r9');

    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      code: 'UPSTREAM_CONNECT_REFUSED',
      proxyStatus: 'connection_refused',
      phase: 'connect',
      upstream: 'orders',
      target,
      requestId: 'r9',
      method: 'GET',
      path: '/items',
      attempts: 3,
      statusCode: 502,
      receivedStatus: null,
      error: expect.objectContaining({ code: 'ECONNREFUSED' }) as unknown,
    });
  });
});

describe('headers set by earlier middleware', () => {
  it('keeps CORS headers on the error response', async () => {
    const app = expressGateway({ target: await refusedUrl() }, (app) => {
      app.use((_req, res, next) => {
        res.setHeader('access-control-allow-origin', '*');
        next();
      });
    });
    const response = await request(app).get('/api/x');
    expect(response.status).toBe(502);
    expect(response.headers['access-control-allow-origin']).toBe('*');
  });
});

describe('request targets that cannot be forwarded', () => {
  it('answers `OPTIONS *` with 400 REQUEST_INVALID and never calls the upstream', async () => {
    const up = await upstream();
    const gateway = await listen(proxy({ target: up.url }));
    const socket = connect(gateway.port, '127.0.0.1');
    socket.write('OPTIONS * HTTP/1.1\r\nhost: x\r\nx-request-id: r1\r\nconnection: close\r\n\r\n');
    let raw = '';
    socket.setEncoding('latin1').on('data', (chunk: string) => (raw += chunk));
    await new Promise((resolve) => socket.once('close', resolve));

    expect(raw.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
    expect(raw).toContain('proxy-status: resilient-proxy; error=http_request_error');
    expect(raw).toContain('"code":"REQUEST_INVALID"');
    expect(raw).toContain('"attempts":0');
    expect(up.requests).toHaveLength(0);
  });

  it('sends an absolute-form request to the configured upstream only', async () => {
    const up = await upstream({ fallback: faults.echo() });
    const gateway = await listen(proxy({ target: up.url }));
    const socket = connect(gateway.port, '127.0.0.1');
    socket.write('GET http://evil.example/steal?x=1 HTTP/1.1\r\nhost: evil.example\r\nconnection: close\r\n\r\n');
    let raw = '';
    socket.setEncoding('latin1').on('data', (chunk: string) => (raw += chunk));
    await new Promise((resolve) => socket.once('close', resolve));

    expect(raw.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    expect(up.requests[0]?.url).toBe('/steal?x=1');
  });
});

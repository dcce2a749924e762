// Hostile and malformed input: nothing a client sends may choose another
// upstream, climb out of the target's path, smuggle bytes into upstream
// headers, or crash the proxy; oversized input gets a proper 4xx and an
// oversized response is cut off under the limits.

import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { once } from 'node:events';
import { connect } from 'node:net';
import { request as httpRequest } from 'node:http';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { DIAGNOSTICS_CHANNELS } from '../src/index.js';
import { faults } from '../src/testing/index.js';
import { expressGateway, listen, onCleanup, rawGet, upstream } from './support.js';

/** Sends `head` (and `body`) exactly as written and returns the whole raw answer. */
async function raw(port: number, head: string, body = ''): Promise<string> {
  const socket = connect(port, '127.0.0.1');
  socket.write(head + body);
  let answer = '';
  socket.setEncoding('latin1').on('data', (chunk: string) => (answer += chunk));
  socket.on('error', () => undefined);
  await new Promise((resolve) => socket.once('close', resolve));
  return answer;
}

const statusLine = (answer: string): string => answer.split('\r\n')[0] ?? '';

describe('the request target cannot choose the upstream or its path', () => {
  it('a `//host` path stays a path on the configured upstream', async () => {
    const up = await upstream({ fallback: faults.echo() });
    const gateway = await listen(expressGateway({ target: `${up.url}/v1` }));

    const answer = await raw(gateway.port, 'GET /api//evil.example/steal HTTP/1.1\r\nhost: shop.example\r\nconnection: close\r\n\r\n');

    expect(statusLine(answer)).toBe('HTTP/1.1 200 OK');
    expect(up.requests.map((r) => [r.url, r.headers.host])).toStrictEqual([['/v1//evil.example/steal', new URL(up.url).host]]);
  });

  it("the client's Host does not pick the upstream's virtual host: the upstream's own host is sent by default", async () => {
    const up = await upstream({ fallback: faults.echo() });
    const byDefault = await listen(expressGateway({ target: up.url }));
    const clientHost = await listen(expressGateway({ target: up.url, changeOrigin: false }));

    await raw(byDefault.port, 'GET /api/x HTTP/1.1\r\nhost: admin.internal\r\nconnection: close\r\n\r\n');
    await raw(clientHost.port, 'GET /api/x HTTP/1.1\r\nhost: shop.example\r\nconnection: close\r\n\r\n');

    expect(up.requests.map((r) => [r.headers.host, r.headers['x-forwarded-host']])).toStrictEqual([
      [new URL(up.url).host, 'admin.internal'],
      ['shop.example', 'shop.example'],
    ]);
  });

  it.each([
    '/api/../admin',
    '/api/./admin',
    '/api/x/../../admin',
    '/api/%2e%2e/admin',
    '/api/%2E%2E/admin',
    '/api/.%2e/admin',
    '/api/x/..%2fadmin',
    '/api/x/..%2Fadmin',
    '/api/x/%2e%2e%5cadmin',
    '/api/x/..\\admin',
    '/api/..',
    '/api/..;/admin',
    '/api/.;/admin',
    '/api/..;jsessionid=1/admin',
    '/api/..%3b/admin',
    '/api/%252e%252e/admin',
    '/api/%25252E%25252E/admin',
    '/api/..%252fadmin',
    '/api/..%00/admin',
    '/api/x%00',
    '/api/%2e%2e%3f/admin',
    '/api/..%23/admin',
    '/api/x?next=/ok/../fine',
  ])('%s: a dot-segment is refused with 400 REQUEST_INVALID before any upstream call', async (path) => {
    const up = await upstream();
    const gateway = await listen(expressGateway({ target: `${up.url}/v1`, name: 'orders' }));

    const answer = await raw(gateway.port, `GET ${path} HTTP/1.1\r\nhost: x\r\nx-request-id: r1\r\nconnection: close\r\n\r\n`);

    if (path.includes('?')) {
      // Dots in the query are not path segments.
      expect(statusLine(answer)).toBe('HTTP/1.1 200 OK');
      return;
    }
    expect(statusLine(answer)).toBe('HTTP/1.1 400 Bad Request');
    expect(answer).toContain('proxy-status: resilient-proxy; error=http_request_error');
    expect(answer).toContain('"code":"REQUEST_INVALID"');
    expect(up.requests).toHaveLength(0);
  });

  it.each(['/api/file.txt', '/api/a..b', '/api/...', '/api/a%2Fb', '/api/v1.2/x', '/api/a;v=1/b', '/api/100%25', '/api/a%252eb'])('%s is forwarded as it is', async (path) => {
    const up = await upstream({ fallback: faults.echo() });
    const gateway = await listen(expressGateway({ target: `${up.url}/v1` }));

    const answer = await raw(gateway.port, `GET ${path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);

    expect(statusLine(answer)).toBe('HTTP/1.1 200 OK');
    expect(up.requests[0]?.url).toBe(`/v1${path.slice('/api'.length)}`);
  });
});

describe('headers', () => {
  it.each([
    ['a CR LF in a header value', 'x-evil: a\r\n b\r\n'],
    ['a NUL in a header value', 'x-evil: a\u0000b\r\n'],
    ['a header name with a space', 'x evil: 1\r\n'],
  ])('%s never reaches the upstream: Node refuses the request', async (_name, header) => {
    const up = await upstream();
    const gateway = await listen(expressGateway({ target: up.url }));

    const answer = await raw(gateway.port, `GET /api/x HTTP/1.1\r\nhost: x\r\n${header}connection: close\r\n\r\n`);

    expect(statusLine(answer)).toBe('HTTP/1.1 400 Bad Request');
    expect(up.requests).toHaveLength(0);
    // The gateway is still up.
    expect((await rawGet(`${gateway.url}/api/after`)).status).toBe(200);
  });

  it('oversized request headers get 431 from Node, and the gateway stays up', async () => {
    const up = await upstream();
    const gateway = await listen(expressGateway({ target: up.url }));

    const answer = await raw(gateway.port, `GET /api/x HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20 * 1024)}\r\nconnection: close\r\n\r\n`);

    expect(statusLine(answer)).toBe('HTTP/1.1 431 Request Header Fields Too Large');
    expect(up.requests).toHaveLength(0);
    expect((await rawGet(`${gateway.url}/api/after`)).status).toBe(200);
  });

  const spoof = {
    'x-forwarded-for': '6.6.6.6',
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'bank.example',
    'x-forwarded-prefix': '/evil',
    'x-forwarded-port': '8443',
    'x-forwarded-server': 'evil.example',
    'x-forwarded-ssl': 'on',
    forwarded: 'for=6.6.6.6;host=bank.example;proto=https',
    'x-real-ip': '6.6.6.6',
  };
  const forwarding = (r: request.Response): Record<string, string> =>
    Object.fromEntries(Object.entries((r.body as { headers: Record<string, string> }).headers).filter(([name]) => name.startsWith('x-forwarded-') || name === 'forwarded' || name === 'x-real-ip'));

  it('every forwarding header a client sends (X-Forwarded-*, Forwarded, X-Real-IP) is dropped and replaced by what the proxy sees', async () => {
    const up = await upstream({ fallback: faults.echo() });

    const answer = await request(expressGateway({ target: up.url })).get('/api/x').set(spoof).set('host', 'shop.example');

    expect(forwarding(answer)).toStrictEqual({ 'x-forwarded-for': '127.0.0.1', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'shop.example' });
  });

  it('with trustProxy every forwarding header a client sends passes, and X-Forwarded-For is appended to', async () => {
    const up = await upstream({ fallback: faults.echo() });

    const answer = await request(expressGateway({ target: up.url, trustProxy: true })).get('/api/x').set(spoof).set('host', 'shop.example');

    expect(forwarding(answer)).toStrictEqual({ ...spoof, 'x-forwarded-for': '6.6.6.6, 127.0.0.1' });
  });

  it('a forwarding header the app set on req.headers itself passes without trustProxy', async () => {
    const up = await upstream({ fallback: faults.echo() });
    const gateway = expressGateway({ target: up.url }, (app) =>
      app.use((req, _res, next) => {
        req.headers['x-forwarded-user'] = 'alice';
        next();
      }),
    );

    const answer = await request(gateway).get('/api/x').set('host', 'shop.example').set('x-forwarded-user', 'mallory').set('x-forwarded-email', 'mallory@example.com');

    expect(forwarding(answer)).toStrictEqual({ 'x-forwarded-for': '127.0.0.1', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'shop.example', 'x-forwarded-user': 'alice' });
  });
});

describe('a client cannot strip or fake the headers the app and the proxy send', () => {
  it("a client's Connection field drops the client's own headers it names, never one the app set on req.headers", async () => {
    const up = await upstream({ fallback: faults.echo() });
    const gateway = await listen(
      expressGateway({ target: up.url }, (app) =>
        app.use((req, _res, next) => {
          req.headers['x-user'] = 'alice';
          req.headers['x-tenant'] = 'acme';
          next();
        }),
      ),
    );

    const answer = await raw(gateway.port, 'GET /api/x HTTP/1.1\r\nhost: x\r\nx-user: mallory\r\nx-hop: 1\r\nconnection: close, x-user, x-tenant, x-hop\r\n\r\n');

    expect(statusLine(answer)).toBe('HTTP/1.1 200 OK');
    const headers = (JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { headers: Record<string, string> }).headers;
    expect([headers['x-user'], headers['x-tenant'], headers['x-hop']]).toStrictEqual(['alice', 'acme', undefined]);
  });

  it.each([
    ['retry: false', { retry: false as const }, undefined],
    ['retries on', {}, '1'],
  ])("with %s the client's X-Attempt-Count never reaches the upstream", async (_label, options, expected) => {
    const up = await upstream({ fallback: faults.echo() });

    const answer = await request(expressGateway({ target: up.url, ...options })).get('/api/x').set('x-attempt-count', '99');

    expect((answer.body as { headers: Record<string, string> }).headers['x-attempt-count']).toBe(expected);
  });
});

describe('size limits', () => {
  it('a request body declared over limits.requestBodyBytes gets 413 before the upstream is called', async () => {
    const up = await upstream();
    const gateway = await listen(expressGateway({ target: up.url, name: 'orders', limits: { requestBodyBytes: 1024 } }));

    const answer = await raw(gateway.port, 'POST /api/x HTTP/1.1\r\nhost: x\r\nx-request-id: r1\r\ncontent-length: 4096\r\nconnection: close\r\n\r\n', 'a'.repeat(4096));

    expect(statusLine(answer)).toBe('HTTP/1.1 413 Payload Too Large');
    expect(answer).toContain('"code":"REQUEST_TOO_LARGE"');
    expect(answer).toContain('"detail":"The request body is larger than this proxy accepts."');
    expect(up.requests).toHaveLength(0);
  });

  it('a chunked request body that grows past the limit is cut off with 413', async () => {
    const up = await upstream({ fallback: faults.hang() });
    const gateway = await listen(expressGateway({ target: up.url, limits: { requestBodyBytes: 64 * 1024 } }));

    const status = await new Promise<number>((resolve, reject) => {
      const client = httpRequest(`${gateway.url}/api/upload`, { method: 'POST', agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      client.once('error', reject);
      const chunk = Buffer.alloc(16 * 1024, 'c');
      const pump = (): void => {
        while (client.write(chunk)) {
          if (client.writableLength > 1024 * 1024) break;
        }
        if (!client.destroyed) client.once('drain', pump);
      };
      pump();
    });

    expect(status).toBe(413);
  });

  it('a response declared over limits.responseBodyBytes is answered 502 UPSTREAM_BAD_RESPONSE', async () => {
    const up = await upstream({ fallback: faults.respond(200, Buffer.alloc(8192, 'r')) });
    const response = await request(expressGateway({ target: up.url, retry: false, limits: { responseBodyBytes: 4096 } })).get('/api/x');

    expect(response.status).toBe(502);
    expect(response.headers['proxy-status']).toBe('resilient-proxy; error=http_response_body_size');
    expect((response.body as { code: string }).code).toBe('UPSTREAM_BAD_RESPONSE');
  });

  it('an endless response body is cut off at the limit: the client sees a truncation', async () => {
    const endless = faults.raw(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n${`4000\r\n${'e'.repeat(0x4000)}\r\n`.repeat(64)}`, 'hang');
    const up = await upstream({ fallback: endless });
    const gateway = await listen(expressGateway({ target: up.url, limits: { responseBodyBytes: 256 * 1024 } }));

    const result = await rawGet(`${gateway.url}/api/stream`);

    expect(result.status).toBe(200);
    expect(result.ending).toBe('truncated');
    expect(result.body.length).toBeLessThanOrEqual(256 * 1024);
  });
});

describe('slow uploads', () => {
  const chunkedPost = (path: string): string => `POST ${path} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n`;

  it('a stalled upload gets 408 REQUEST_TIMEOUT after timeout.upload, without calling the upstream', async () => {
    const up = await upstream({ fallback: faults.echo() });
    const gateway = await listen(expressGateway({ target: up.url, name: 'orders', timeout: { upload: 100 } }));

    const answer = await raw(gateway.port, chunkedPost('/api/x'));

    expect(statusLine(answer)).toBe('HTTP/1.1 408 Request Timeout');
    expect(answer).toContain('\r\nconnection: close\r\n');
    expect(answer).toContain('"code":"REQUEST_TIMEOUT"');
    expect(answer).toContain('"detail":"The request body did not arrive in time."');
    expect(up.connections).toBe(0);
  });

  it('streamed past the buffer, a stalled upload gets 408 too, and is not counted against the upstream', async () => {
    const up = await upstream({ fallback: faults.echo() });
    const app = expressGateway({ target: up.url, timeout: { upload: 100 }, limits: { requestBufferBytes: 0 }, breaker: { volumeThreshold: 1, errorThresholdPercentage: 1 } });
    const gateway = await listen(app);

    const answer = await raw(gateway.port, chunkedPost('/api/x'));

    expect(statusLine(answer)).toBe('HTTP/1.1 408 Request Timeout');
    expect(answer).toContain('\r\nconnection: close\r\n');
    expect(answer).toContain('"code":"REQUEST_TIMEOUT"');
    // The upstream was called (the body streamed), and the stall is not its failure.
    expect(answer).toContain('"attempts":1');
    expect((await request(app).get('/api/after')).status).toBe(200);
  });

  it('with breaker.capacity 50, 50 slow uploads hold no slot: other GETs succeed, and the uploads go through once complete', async () => {
    const up = await upstream({ fallback: faults.echo() });
    const gateway = await listen(expressGateway({ target: up.url, name: 'orders', breaker: { capacity: 50 } }));
    let started = 0;
    let allStarted!: () => void;
    const fifty = new Promise<void>((resolve) => (allStarted = resolve));
    const onStart = (): void => {
      started += 1;
      if (started === 50) allStarted();
    };
    subscribe(DIAGNOSTICS_CHANNELS.exchangeStart, onStart);
    onCleanup(() => unsubscribe(DIAGNOSTICS_CHANNELS.exchangeStart, onStart));

    const uploads = Array.from({ length: 50 }, () => {
      const socket = connect(gateway.port, '127.0.0.1');
      socket.write(chunkedPost('/api/upload'));
      let answer = '';
      socket.setEncoding('latin1').on('data', (chunk: string) => (answer += chunk));
      socket.on('error', () => undefined);
      onCleanup(() => socket.destroy());
      return { socket, answer: () => answer };
    });
    await fifty;
    unsubscribe(DIAGNOSTICS_CHANNELS.exchangeStart, onStart);
    const others = await Promise.all(Array.from({ length: 5 }, (_, i) => request(gateway.url).get(`/api/page/${i}`)));

    expect(others.map((r) => r.status)).toStrictEqual([200, 200, 200, 200, 200]);
    expect(up.requests.map((r) => r.url).sort()).toStrictEqual(['/page/0', '/page/1', '/page/2', '/page/3', '/page/4']);

    const answered = uploads.map(({ socket, answer }) => {
      const done = once(socket, 'data').then(() => answer());
      socket.write('2\r\nbc\r\n0\r\n\r\n');
      return done;
    });
    const answers = await Promise.all(answered);
    expect(answers.map(statusLine)).toStrictEqual(Array(50).fill('HTTP/1.1 200 OK'));
    await up.waitForRequests(55);
    // Read whole before the upstream was called, they go to it in one piece, as nginx sends a buffered body.
    expect(up.requests.filter((r) => r.url === '/upload').map((r) => [r.body.toString(), r.headers['content-length'], r.headers['transfer-encoding']])).toStrictEqual(
      Array(50).fill(['abc', '3', undefined]),
    );
  });
});

describe('Expect: 100-continue', () => {
  /** Sends a head with `Expect: 100-continue`; the body only after `100 Continue`. Returns everything the server said. */
  async function expectContinue(port: number, length: number): Promise<string> {
    const socket = connect(port, '127.0.0.1');
    socket.write(`POST /api/upload HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: ${length}\r\nconnection: close\r\n\r\n`);
    let answer = '';
    socket.setEncoding('latin1').on('data', (chunk: string) => {
      answer += chunk;
      if (answer === 'HTTP/1.1 100 Continue\r\n\r\n') socket.write('b'.repeat(length));
    });
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('close', resolve));
    return answer;
  }

  it("wired to 'checkContinue': a body declared over the limit gets 413 and never 100 Continue", async () => {
    const up = await upstream();
    const gateway = await listen(expressGateway({ target: up.url, limits: { requestBodyBytes: 1024 } }));
    gateway.server.on('checkContinue', (req, res) => gateway.server.emit('request', req, res));

    const answer = await expectContinue(gateway.port, 4096);

    expect(statusLine(answer)).toBe('HTTP/1.1 413 Payload Too Large');
    expect(answer).toMatch(/\r\nconnection: close\r\n/i);
    expect(up.requests).toHaveLength(0);
  });

  it("wired to 'checkContinue': a body within the limit gets 100 Continue once, then the upstream's answer", async () => {
    const up = await upstream({ fallback: faults.echo() });
    const gateway = await listen(expressGateway({ target: up.url, limits: { requestBodyBytes: 1024 } }));
    gateway.server.on('checkContinue', (req, res) => gateway.server.emit('request', req, res));

    const answer = await expectContinue(gateway.port, 512);

    expect(answer.startsWith('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n')).toBe(true);
    expect(up.requests[0]?.bodyBytes).toBe(512);
  });

  it('not wired: Node has said 100 Continue itself, and the proxy does not say it twice', async () => {
    const up = await upstream({ fallback: faults.echo() });
    const gateway = await listen(expressGateway({ target: up.url }));

    const answer = await expectContinue(gateway.port, 512);

    expect(answer.split('100 Continue')).toHaveLength(2);
    expect(answer).toContain('HTTP/1.1 200 OK\r\n');
  });
});

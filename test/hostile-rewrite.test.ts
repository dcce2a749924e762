// Hostile upstreams against the response side: decompression bombs fed to
// transformResponse, framing headers from headers.response, hooks that never
// settle, and redirects and cookies built to leak an internal host or send the
// client elsewhere. Each test fails on the code before its fix.

import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { brotliCompressSync, constants, createBrotliCompress, createGzip, gzipSync, type BrotliCompress, type Gzip } from 'node:zlib';
import request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS, type FailureEvent, type ProxyOptions } from '../src/index.js';
import { faults, type Behaviour } from '../src/testing/index.js';
import { expressGateway, listen, proxy, rawGet, upstream } from './support.js';

const respondWith =
  (status: number, headers: Record<string, string | string[] | number>, body: Buffer | string = ''): Behaviour =>
  ({ res }) => {
    res.writeHead(status, { 'content-length': Buffer.byteLength(body), ...headers });
    res.end(body);
  };

/** `size` bytes of zeros through a streaming compressor, fed 1 MiB at a time. */
async function bomb(compressor: BrotliCompress | Gzip, size: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  compressor.on('data', (chunk: Buffer) => chunks.push(chunk));
  const zeros = Buffer.alloc(1024 * 1024);
  for (let written = 0; written < size; written += zeros.length) {
    if (!compressor.write(zeros)) await once(compressor, 'drain');
  }
  compressor.end();
  await once(compressor, 'end');
  return Buffer.concat(chunks);
}

function failures(): { events: FailureEvent[]; onFailure: (event: FailureEvent) => void } {
  const events: FailureEvent[] = [];
  return { events, onFailure: (event) => events.push(event) };
}

describe('transformResponse against decompression bombs', () => {
  const GiB = 1024 * 1024 * 1024;
  let brotliBomb: Buffer = Buffer.alloc(0);
  let gzipBomb: Buffer = Buffer.alloc(0);

  beforeAll(async () => {
    // 1 GiB of zeros: about 190 KB of brotli (quality 1 keeps this fast), and
    // 64 MiB of zeros in about 65 KB of gzip; both well under maxBytes.
    brotliBomb = await bomb(createBrotliCompress({ params: { [constants.BROTLI_PARAM_QUALITY]: 1 } }), GiB);
    gzipBomb = await bomb(createGzip({ level: 9 }), 64 * 1024 * 1024);
  }, 60_000);

  it.each([
    { encoding: 'br', body: () => brotliBomb },
    { encoding: 'gzip', body: () => gzipBomb },
  ])('a $encoding bomb under maxBytes is decoded only up to maxBytes: the client gets the original bytes untransformed, the transform is never called', async ({ encoding, body }) => {
    const compressed = body();
    expect(compressed.length).toBeLessThan(DEFAULTS.transformMaxBytes);
    const up = await upstream({ fallback: respondWith(200, { 'content-type': 'application/json', 'content-encoding': encoding, etag: '"v1"' }, compressed) });
    const calls: number[] = [];
    const gateway = await listen(
      expressGateway({
        target: up.url,
        transformResponse: {
          match: () => true,
          transform: (decoded) => {
            calls.push(decoded.length);
            return 'changed';
          },
        },
      }),
    );

    const response = await rawGet(`${gateway.url}/api/x`, { 'accept-encoding': 'br, gzip' });

    expect(calls).toStrictEqual([]);
    expect([response.status, response.ending, response.headers['content-encoding'], response.headers['content-length'], response.headers.etag]).toStrictEqual([
      200,
      'complete',
      encoding,
      String(compressed.length),
      '"v1"',
    ]);
    expect(response.body.equals(compressed)).toBe(true);
  });

  it('a body to transform that trickles (a byte per 10 ms) is bounded head to end by timeout.response: the contract, UPSTREAM_RESPONSE_TIMEOUT', async () => {
    const up = await upstream({
      fallback: ({ res }) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        const drip = setInterval(() => res.write(' '), 10);
        res.once('close', () => clearInterval(drip));
      },
    });
    const calls: number[] = [];
    const app = expressGateway({
      target: up.url,
      retry: false,
      timeout: { response: 200 },
      transformResponse: {
        match: () => true,
        transform: (decoded) => {
          calls.push(decoded.length);
          return decoded;
        },
      },
    });

    const response = await request(app).get('/api/x');

    expect([response.status, (response.body as { code: string }).code, response.headers['proxy-status']]).toStrictEqual([
      502,
      'UPSTREAM_RESPONSE_TIMEOUT',
      'resilient-proxy; error=http_response_timeout',
    ]);
    expect(calls).toStrictEqual([]);
  });

  it('a body that decodes to exactly maxBytes is still transformed', async () => {
    const maxBytes = 4096;
    const encoded = gzipSync(Buffer.alloc(maxBytes, 'a'));
    const up = await upstream({ fallback: respondWith(200, { 'content-encoding': 'gzip' }, encoded) });
    const gateway = await listen(expressGateway({ target: up.url, transformResponse: { match: () => true, transform: (decoded) => String(decoded.length), maxBytes } }));

    const response = await rawGet(`${gateway.url}/api/x`, { 'accept-encoding': 'gzip' });

    expect(response.headers['content-encoding']).toBe('gzip');
    expect(response.body.equals(gzipSync('4096'))).toBe(true);
  });

  it.each([
    { name: 'gzip, gzip', encoding: 'gzip, gzip' },
    { name: 'two Content-Encoding fields', encoding: ['gzip', 'gzip'] },
    { name: 'br, gzip', encoding: 'br, gzip' },
  ])('nested encodings ($name) pass through untransformed, byte for byte', async ({ encoding }) => {
    const twice = gzipSync(gzipSync('{"internal":"secret"}'));
    const up = await upstream({ fallback: respondWith(200, { 'content-encoding': encoding }, twice) });
    const calls: Buffer[] = [];
    const gateway = await listen(
      expressGateway({
        target: up.url,
        transformResponse: {
          match: () => true,
          transform: (decoded) => {
            calls.push(decoded);
            return 'changed';
          },
        },
      }),
    );

    const response = await rawGet(`${gateway.url}/api/x`, { 'accept-encoding': 'gzip, br' });

    expect(calls).toStrictEqual([]);
    expect(response.status).toBe(200);
    expect(response.body.equals(twice)).toBe(true);
  });

  it('a transform whose result is too large to encode is the contract (PROXY_INTERNAL_ERROR), never a silently empty 200', async () => {
    const up = await upstream({ fallback: respondWith(200, { 'content-encoding': 'br' }, brotliCompressSync('{}')) });
    const seen = failures();
    const app = expressGateway({
      target: up.url,
      retry: false,
      hooks: { onFailure: seen.onFailure },
      // Zero-filled pages are not touched: this costs no real memory.
      transformResponse: { match: () => true, transform: () => Buffer.alloc(GiB + 1) },
    });

    const response = await request(app).get('/api/x');

    expect([response.status, (response.body as { code: string }).code]).toStrictEqual([502, 'PROXY_INTERNAL_ERROR']);
    expect(seen.events.map((e) => e.code)).toStrictEqual(['PROXY_INTERNAL_ERROR']);
  });
});

describe('hooks that never settle end with the contract without blaming the upstream', () => {
  const never = (): Promise<never> => new Promise<never>(() => undefined);

  it('timeout.hook is on by default', () => {
    expect(DEFAULTS.timeout.hook).toBe(10_000);
  });

  it.each([
    { name: 'headers.request', options: { headers: { request: never } } satisfies Partial<ProxyOptions>, upstreamCalls: 0 },
    { name: 'transformResponse', options: { transformResponse: { match: () => true, transform: never } } satisfies Partial<ProxyOptions>, upstreamCalls: 1 },
  ])('$name that never settles: PROXY_INTERNAL_ERROR after timeout.hook, with timeout.total off', async ({ options, upstreamCalls }) => {
    const up = await upstream({ fallback: faults.respond(200, 'secret body') });
    const seen = failures();
    const app = expressGateway({ target: up.url, timeout: { hook: 50 }, hooks: { onFailure: seen.onFailure }, ...options });

    const response = await request(app).get('/api/x');

    expect([response.status, (response.body as { code: string }).code, response.headers['proxy-status']]).toStrictEqual([
      502,
      'PROXY_INTERNAL_ERROR',
      'resilient-proxy; error=proxy_internal_error',
    ]);
    expect(response.text).not.toContain('secret body');
    expect(seen.events.map((e) => e.code)).toStrictEqual(['PROXY_INTERNAL_ERROR']);
    expect(up.requests).toHaveLength(upstreamCalls);
  });

  it.each([
    { name: 'headers.request', options: { headers: { request: never } } satisfies Partial<ProxyOptions>, upstreamCalls: 0 },
    { name: 'transformResponse', options: { transformResponse: { match: () => true, transform: never } } satisfies Partial<ProxyOptions>, upstreamCalls: 1 },
  ])('$name still pending when timeout.total runs out: PROXY_INTERNAL_ERROR, not UPSTREAM_RESPONSE_TIMEOUT', async ({ options, upstreamCalls }) => {
    const up = await upstream({ fallback: faults.respond(200, 'ok') });
    const app = expressGateway({ target: up.url, timeout: { total: 50 }, ...options });

    const response = await request(app).get('/api/x');

    expect([response.status, (response.body as { code: string }).code]).toStrictEqual([502, 'PROXY_INTERNAL_ERROR']);
    expect(up.requests).toHaveLength(upstreamCalls);
  });

  it('a WebSocket handshake whose headers.request never settles: the contract after timeout.hook, the upstream never called', async () => {
    const up = await upstream();
    const handler = proxy({ target: up.url, timeout: { hook: 50 }, headers: { request: never } });
    const gateway = await listen((req: IncomingMessage, res: ServerResponse) => handler(req, res));
    gateway.server.on('upgrade', (req, socket, head) => void handler.upgrade(req, socket, head));
    const socket = connect(gateway.port, '127.0.0.1');
    let answer = '';
    socket.setEncoding('latin1').on('data', (chunk: string) => (answer += chunk));
    socket.write('GET /chat HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');

    await once(socket, 'close');

    expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 502 Bad Gateway');
    expect(answer).toContain('"code":"PROXY_INTERNAL_ERROR"');
    expect(up.requests).toHaveLength(0);
  });

  it('a transform the deadline ends is not counted by the breaker: the circuit stays closed', async () => {
    const up = await upstream({ fallback: faults.respond(200, 'ok') });
    const app = expressGateway({
      target: up.url,
      retry: false,
      timeout: { total: 30 },
      breaker: { volumeThreshold: 1, errorThresholdPercentage: 1 },
      transformResponse: { match: () => true, transform: never },
    });

    const codes: string[] = [];
    for (let i = 0; i < 3; i += 1) codes.push(((await request(app).get('/api/x')).body as { code: string }).code);

    expect(codes).toStrictEqual(['PROXY_INTERNAL_ERROR', 'PROXY_INTERNAL_ERROR', 'PROXY_INTERNAL_ERROR']);
    expect(up.requests).toHaveLength(3);
  });
});


interface ParsedResponse {
  readonly head: string;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/** What a keep-alive client parses from `raw`: each response framed as its head says, and whatever bytes remain. */
function parseResponses(raw: string): { responses: ParsedResponse[]; rest: string } {
  const responses: ParsedResponse[] = [];
  let rest = raw;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (!rest.startsWith('HTTP/1.1 ') || end === -1) return { responses, rest };
    const [head = '', ...lines] = rest.slice(0, end).split('\r\n');
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    let body = '';
    let at = end + 4;
    if (headers['transfer-encoding'] === 'chunked') {
      for (;;) {
        const eol = rest.indexOf('\r\n', at);
        const size = Number.parseInt(rest.slice(at, eol), 16);
        at = eol + 2 + size + 2;
        if (size === 0) break;
        body += rest.slice(eol + 2, eol + 2 + size);
      }
    } else {
      const length = Number(headers['content-length'] ?? 0);
      body = rest.slice(at, at + length);
      at += length;
    }
    responses.push({ head, headers, body });
    rest = rest.slice(at);
  }
}

describe('headers.response cannot frame the body (response splitting)', () => {
  const smuggled = 'HTTP/1.1 200 OK\r\ncontent-length: 4\r\nx-injected: yes\r\n\r\nevil';
  const body = `hello${smuggled}--end`;

  it.each([
    { name: 'an object setting Content-Length', response: { 'content-length': '5' } },
    { name: 'a function setting Content-Length', response: (headers: Record<string, string | string[]>) => ({ ...headers, 'content-length': '5' }) },
    { name: 'a function removing Content-Length', response: ({ 'content-length': _dropped, ...headers }: Record<string, string | string[]>) => headers },
    { name: 'an object removing Content-Length', response: { 'content-length': null } },
    { name: 'a function setting Transfer-Encoding and Connection', response: (headers: Record<string, string | string[]>) => ({ ...headers, 'transfer-encoding': 'chunked', connection: 'close' }) },
  ])('$name: a keep-alive client parses exactly one response, the upstream\'s whole body', async ({ response }) => {
    const up = await upstream({ fallback: respondWith(200, { 'content-type': 'text/plain' }, body) });
    const gateway = await listen(expressGateway({ target: up.url, headers: { response } }));
    const socket = connect(gateway.port, '127.0.0.1');
    let raw = '';
    socket.setEncoding('latin1').on('data', (chunk: string) => (raw += chunk));
    socket.write('GET /api/x HTTP/1.1\r\nhost: shop.example\r\nconnection: keep-alive\r\n\r\n');

    while (!raw.includes('--end')) await once(socket, 'data');
    socket.destroy();
    const { responses, rest } = parseResponses(raw);

    expect(responses.map((r) => [r.head, r.headers['content-length'], r.headers['transfer-encoding'], r.headers['x-injected'], r.body])).toStrictEqual([
      ['HTTP/1.1 200 OK', String(body.length), undefined, undefined, body],
    ]);
    expect(rest).toBe('');
  });
});

/** The values of every `name` field of the answer to `GET path`, read from the wire (Node's client keeps only the first Location). */
async function fieldsOf(port: number, path: string, name: string): Promise<string[]> {
  const socket = connect(port, '127.0.0.1');
  let raw = '';
  socket.setEncoding('latin1').on('data', (chunk: string) => (raw += chunk));
  socket.write(`GET ${path} HTTP/1.1\r\nhost: shop.example\r\nconnection: close\r\n\r\n`);
  await once(socket, 'close');
  const head = raw.slice(0, raw.indexOf('\r\n\r\n')).split('\r\n');
  return head.filter((line) => line.toLowerCase().startsWith(`${name}:`)).map((line) => line.slice(name.length + 1).trim());
}

describe('rewriteRedirects leaves no internal host and makes no open redirect', () => {
  /** An upstream answering 302 with `headers(url)`, its own URL given. */
  async function answering(headers: (url: string) => Record<string, string | string[]>) {
    let url = '';
    const up = await upstream({ fallback: ({ res }) => respondWith(302, headers(url))({ res } as never) });
    url = up.url;
    return up;
  }

  it.each([
    { sent: '/v1//evil.example/', expected: 'http://shop.example//evil.example/' },
    { sent: '/v1/\\evil.example/', expected: 'http://shop.example/\\evil.example/' },
    { sent: '/v1/\t/evil.example/', expected: 'http://shop.example//evil.example/' },
  ])('with no mount path, $sent never becomes a scheme-relative redirect to another site', async ({ sent, expected }) => {
    const up = await answering(() => ({ location: sent }));
    const gateway = await listen(proxy({ target: `${up.url}/v1` }));

    expect(await fieldsOf(gateway.port, '/x', 'location')).toStrictEqual([expected]);
  });

  it.each([
    { name: 'scheme-relative', sent: (url: string) => url.replace('http:', '') + '/v1/next?a=1' },
    { name: 'scheme-relative with a backslash', sent: (url: string) => url.replace('http://', '/\\') + '/v1/next?a=1' },
    { name: 'the other scheme', sent: (url: string) => url.replace('http:', 'https:') + '/v1/next?a=1' },
    { name: 'localhost', sent: (url: string) => url.replace('127.0.0.1', 'localhost') + '/v1/next?a=1' },
    { name: 'LOCALHOST. (any case, trailing dot)', sent: (url: string) => url.replace('127.0.0.1', 'LOCALHOST.') + '/v1/next?a=1' },
    { name: '[::1]', sent: (url: string) => url.replace('127.0.0.1', '[::1]') + '/v1/next?a=1' },
    { name: '127.1 (a short IPv4 spelling)', sent: (url: string) => url.replace('127.0.0.1', '127.1') + '/v1/next?a=1' },
    { name: 'another port of the same host', sent: () => 'http://127.0.0.1:1/v1/next?a=1' },
  ])('a Location at the upstream host spelled $name moves to the client origin and mount path', async ({ sent }) => {
    const up = await answering((url) => ({ location: sent(url) }));
    const gateway = await listen(expressGateway({ target: `${up.url}/v1` }));

    expect(await fieldsOf(gateway.port, '/api/x', 'location')).toStrictEqual(['http://shop.example/api/next?a=1']);
  });

  it('every copy of a Location sent twice is rewritten', async () => {
    const up = await answering((url) => ({ location: [`${url}/v1/a`, `${url}/v1/b`] }));
    const gateway = await listen(expressGateway({ target: `${up.url}/v1` }));

    const locations = await fieldsOf(gateway.port, '/api/x', 'location');

    expect(locations).toStrictEqual(['http://shop.example/api/a', 'http://shop.example/api/b']);
  });

  it('Link targets at the upstream host are rewritten in every field; others pass as sent', async () => {
    const up = await answering((url) => ({
      location: '/v1/x',
      link: [`<${url}/v1/page/2>; rel="next", <https://cdn.example/app.css>; rel=preload`, `<//127.0.0.1:${new URL(url).port}/v1/page/1>; rel="prev"`],
    }));
    const gateway = await listen(expressGateway({ target: `${up.url}/v1` }));

    expect(await fieldsOf(gateway.port, '/api/x', 'link')).toStrictEqual([
      '<http://shop.example/api/page/2>; rel="next", <https://cdn.example/app.css>; rel=preload',
      '<http://shop.example/api/page/1>; rel="prev"',
    ]);
  });

  it.each(['https://login.example/auth', '//cdn.example/x', 'next/page', 'http://127.0.0.2.example/x'])('%s (another site, or a relative reference) passes as sent', async (sent) => {
    const up = await answering(() => ({ location: sent }));
    const gateway = await listen(expressGateway({ target: `${up.url}/v1` }));

    expect(await fieldsOf(gateway.port, '/api/x', 'location')).toStrictEqual([sent]);
  });
});

describe('cookie rewriting reaches every Domain and Path, whatever their spelling', () => {
  it.each([
    {
      name: 'a second Domain (the one browsers use)',
      cookie: 'a=1; Domain=internal.local; Path=/; Domain=internal.local',
      options: { cookieDomainRewrite: 'shop.example' },
      expected: 'a=1; Domain=shop.example; Path=/; Domain=shop.example',
    },
    { name: 'spaces around =', cookie: 'a=1; Domain = internal.local ; Secure', options: { cookieDomainRewrite: { 'internal.local': 'shop.example' } }, expected: 'a=1; Domain=shop.example; Secure' },
    { name: 'DOMAIN and a leading dot', cookie: 'a=1; DOMAIN=.Internal.Local', options: { cookieDomainRewrite: { 'internal.local': 'shop.example' } }, expected: 'a=1; DOMAIN=shop.example' },
    { name: 'removal of every Domain', cookie: 'a=1; domain=x.internal; Path=/; Domain=y.internal', options: { cookieDomainRewrite: { '*': '' } }, expected: 'a=1; Path=/' },
    { name: 'a second Path', cookie: 'a=1; Path=/v1; path = /v1', options: { cookiePathRewrite: { '/v1': '/api' } }, expected: 'a=1; Path=/api; path=/api' },
    { name: 'a Domain named like an Object property', cookie: 'a=1; Domain=constructor', options: { cookieDomainRewrite: { 'internal.local': 'shop.example' } }, expected: 'a=1; Domain=constructor' },
    { name: 'a value that looks like an attribute', cookie: 'a=domain=internal.local; Path=/', options: { cookieDomainRewrite: 'shop.example' }, expected: 'a=domain=internal.local; Path=/' },
  ])('$name', async ({ cookie, options, expected }) => {
    const up = await upstream({ fallback: respondWith(200, { 'set-cookie': cookie }) });
    const app = expressGateway({ target: up.url, ...options });

    const response = await request(app).get('/api/x');

    expect(response.headers['set-cookie']).toStrictEqual([expected]);
  });
});

describe('a hook that must answer at once and returns a promise', () => {
  it.each([
    { name: 'headers.response (async, resolving)', options: { headers: { response: async (headers: Record<string, string | string[]>) => Promise.resolve({ ...headers, 'x-added': '1' }) } } },
    { name: 'headers.response (async, rejecting)', options: { headers: { response: async () => Promise.reject(new Error('hook bug')) } } },
    { name: 'transformResponse.match (async, resolving)', options: { transformResponse: { match: async () => Promise.resolve(false), transform: () => 'changed' } } },
    { name: 'transformResponse.match (async, rejecting)', options: { transformResponse: { match: async () => Promise.reject(new Error('hook bug')), transform: () => 'changed' } } },
    { name: 'pathRewrite (async, rejecting)', options: { pathRewrite: async () => Promise.reject(new Error('hook bug')) } },
  ])('$name: the contract (PROXY_INTERNAL_ERROR), never a response stripped of its headers nor an unhandled rejection', async ({ options }) => {
    const up = await upstream({ fallback: respondWith(200, { 'content-type': 'application/json' }, '{"secret":1}') });
    const app = expressGateway({ target: up.url, retry: false, ...(options as unknown as Partial<ProxyOptions>) });

    const response = await request(app).get('/api/x');

    expect([response.status, (response.body as { code: string }).code]).toStrictEqual([502, 'PROXY_INTERNAL_ERROR']);
    expect(response.text).not.toContain('secret');
  });
});

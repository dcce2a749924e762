// Rewriting requests and responses, as migrants from http-proxy-middleware
// expect: the path, headers both ways, redirects that name an internal host,
// cookies' Domain and Path, and response bodies. Every hook that fails ends in
// the contract; nothing a hook returns can smuggle a header or leave the target.

import { promisify } from 'node:util';
import { brotliCompressSync, brotliDecompressSync, gunzipSync, gzipSync } from 'node:zlib';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import type { FailureEvent, ProxyOptions } from '../src/index.js';
import { faults, type Behaviour } from '../src/testing/index.js';
import { expressGateway, listen, rawGet, upstream } from './support.js';

interface Echoed {
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string>;
}

async function echoGateway(options: Omit<ProxyOptions, 'target'>, targetPath = '/v1') {
  const up = await upstream({ fallback: faults.echo() });
  return { up, app: expressGateway({ target: `${up.url}${targetPath}`, ...options }) };
}

function failures(): { events: FailureEvent[]; onFailure: (event: FailureEvent) => void } {
  const events: FailureEvent[] = [];
  return { events, onFailure: (event) => events.push(event) };
}

const respondWith =
  (status: number, headers: Record<string, string | string[]>, body = ''): Behaviour =>
  ({ res }) => {
    res.writeHead(status, { 'content-length': Buffer.byteLength(body), ...headers });
    res.end(body);
  };

describe('pathRewrite', () => {
  it('object form: the first matching rule applies, after the mount path is removed and before the target prefix; the query stays', async () => {
    const { app } = await echoGateway({ pathRewrite: { '^/old/': '/new/', '^/new/': '/never/' } });

    const response = await request(app).get('/api/old/items?page=2');

    expect((response.body as Echoed).url).toBe('/v1/new/items?page=2');
  });

  it("object form: a rule that removes the leading slash ('^/api': '') still yields a path", async () => {
    const { app } = await echoGateway({ pathRewrite: { '^/legacy': '' } }, '');

    const response = await request(app).get('/api/legacy');

    expect((response.body as Echoed).url).toBe('/');
  });

  it('function form: gets the path and the request', async () => {
    const { app } = await echoGateway({ pathRewrite: (path, req) => `/tenant/${String(req.headers['x-tenant'])}${path}` });

    const response = await request(app).get('/api/items').set('x-tenant', 'acme');

    expect((response.body as Echoed).url).toBe('/v1/tenant/acme/items');
  });

  it('a rewrite that climbs out of the prefix is refused with 400 before the upstream is called', async () => {
    const { up, app } = await echoGateway({ pathRewrite: (path) => `/../admin${path}` });

    const response = await request(app).get('/api/x');

    expect(response.status).toBe(400);
    expect((response.body as { code: string }).code).toBe('REQUEST_INVALID');
    expect(up.requests).toHaveLength(0);
  });

  it('a rewrite that returns an absolute URL cannot choose another host: it is a path on the configured upstream', async () => {
    const { up, app } = await echoGateway({ pathRewrite: () => 'http://evil.example/steal' });

    const response = await request(app).get('/api/x').set('host', 'shop.example');

    expect(response.status).toBe(200);
    expect(up.requests.map((r) => [r.url, r.headers.host])).toStrictEqual([['/v1/http://evil.example/steal', new URL(up.url).host]]);
  });

  it('a rewrite function that throws: PROXY_INTERNAL_ERROR with the contract, the error given to onFailure', async () => {
    const seen = failures();
    const { up, app } = await echoGateway({
      pathRewrite: () => {
        throw new Error('bad rule');
      },
      hooks: { onFailure: seen.onFailure },
    });

    const response = await request(app).get('/api/x');

    expect(response.status).toBe(502);
    expect(response.headers['content-type']).toBe('application/problem+json');
    expect((response.body as { code: string }).code).toBe('PROXY_INTERNAL_ERROR');
    expect(JSON.stringify(response.body)).not.toContain('bad rule');
    expect(seen.events.map((e) => [e.code, ((e.error as Error).cause as Error).message])).toStrictEqual([['PROXY_INTERNAL_ERROR', 'bad rule']]);
    expect(up.requests).toHaveLength(0);
  });
});

describe('headers.request', () => {
  it('object form: sets and removes headers', async () => {
    const { app } = await echoGateway({ headers: { request: { 'x-api-key': 'k1', cookie: null } } });

    const response = await request(app).get('/api/x').set('cookie', 'session=1');

    const { headers } = response.body as Echoed;
    expect([headers['x-api-key'], headers.cookie]).toStrictEqual(['k1', undefined]);
  });

  it('an async function (an auth token): what it returns is what goes upstream, on every attempt', async () => {
    const up = await upstream({ fallback: faults.echo() });
    up.enqueue(faults.resetBeforeHeaders());
    let calls = 0;
    const app = expressGateway({
      target: up.url,
      retry: { minDelay: 1, maxDelay: 1 },
      headers: {
        request: async (headers) => {
          calls += 1;
          await Promise.resolve();
          return { ...headers, authorization: 'Bearer t0ken' };
        },
      },
    });

    const response = await request(app).get('/api/x');

    expect(response.status).toBe(200);
    expect(up.requests.map((r) => [r.headers.authorization, r.headers['x-attempt-count']])).toStrictEqual([
      ['Bearer t0ken', '1'],
      ['Bearer t0ken', '2'],
    ]);
    expect(calls).toBe(1);
  });

  it('hop-by-hop headers, Host and Content-Length a hook returns are not what goes upstream', async () => {
    const { app } = await echoGateway({
      headers: { request: (headers) => ({ ...headers, connection: 'x-secret', 'x-secret': 'gone', host: 'evil.example', 'content-length': '999' }) },
    });

    const response = await request(app).post('/api/x').send('hello');

    const { headers } = response.body as Echoed;
    expect(headers['x-secret']).toBeUndefined();
    expect(headers.host).not.toBe('evil.example');
    expect(headers['content-length']).toBe('5');
  });

  it.each([
    {
      name: 'rejects',
      hook: () => Promise.reject(new Error('token service down')),
    },
    { name: 'returns a value with CR/LF', hook: () => ({ 'x-injected': 'a\r\nx-smuggled: 1' }) },
    { name: 'returns a header name that is not a token', hook: () => ({ 'bad name': 'x' }) },
  ])('a hook that $name: PROXY_INTERNAL_ERROR with the contract, nothing sent upstream', async ({ hook }) => {
    const seen = failures();
    const { up, app } = await echoGateway({ headers: { request: hook }, hooks: { onFailure: seen.onFailure } });

    const response = await request(app).get('/api/x');

    expect(response.status).toBe(502);
    expect((response.body as { code: string }).code).toBe('PROXY_INTERNAL_ERROR');
    expect(seen.events.map((e) => e.code)).toStrictEqual(['PROXY_INTERNAL_ERROR']);
    expect(up.requests).toHaveLength(0);
  });

  it('an async hook counts against timeout.total, and the hook is blamed (the upstream was never called)', async () => {
    const { up, app } = await echoGateway({ timeout: { total: 50 }, headers: { request: () => new Promise(() => undefined) } });

    const response = await request(app).get('/api/x');

    expect(response.status).toBe(502);
    expect((response.body as { code: string }).code).toBe('PROXY_INTERNAL_ERROR');
    expect(up.requests).toHaveLength(0);
  });
});

describe('headers.response', () => {
  it('object form sets and removes; the function form sees the status and the request (req.url as the client sent it)', async () => {
    const up = await upstream({ fallback: respondWith(200, { 'x-backend-version': '7.1', 'content-type': 'text/plain' }, 'ok') });
    const objectForm = expressGateway({ target: up.url, headers: { response: { 'x-backend-version': null, 'x-gateway': 'rp' } } });
    const functionForm = expressGateway({
      target: up.url,
      headers: { response: (headers, { statusCode, req }) => ({ ...headers, 'x-status': String(statusCode), 'x-path': req.url ?? '' }) },
    });

    const first = await request(objectForm).get('/api/x');
    const second = await request(functionForm).get('/api/y');

    expect([first.headers['x-backend-version'], first.headers['x-gateway'], first.text]).toStrictEqual([undefined, 'rp', 'ok']);
    expect([second.headers['x-status'], second.headers['x-path']]).toStrictEqual(['200', '/api/y']);
  });

  it('hop-by-hop headers the hook returns are stripped', async () => {
    const up = await upstream({ fallback: faults.respond(200, 'ok') });
    const app = expressGateway({ target: up.url, headers: { response: (headers) => ({ ...headers, 'keep-alive': 'timeout=1', 'x-kept': 'yes' }) } });

    const response = await request(app).get('/api/x');

    expect([response.headers['keep-alive'], response.headers['x-kept']]).toStrictEqual([undefined, 'yes']);
  });

  it.each([
    {
      name: 'throws',
      hook: () => {
        throw new Error('oops');
      },
    },
    { name: 'returns CR/LF in a value', hook: () => ({ 'set-cookie': 'a=1\r\nx-smuggled: 1' }) },
  ])('a hook that $name: the contract before any byte went out', async ({ hook }) => {
    const up = await upstream({ fallback: faults.respond(200, 'secret body') });
    const app = expressGateway({ target: up.url, retry: false, headers: { response: hook } });

    const response = await request(app).get('/api/x');

    expect(response.status).toBe(502);
    expect((response.body as { code: string }).code).toBe('PROXY_INTERNAL_ERROR');
    expect(response.headers['x-smuggled']).toBeUndefined();
    expect(response.text).not.toContain('secret body');
  });
});

describe('rewriteRedirects', () => {
  async function redirecting(location: (upstreamUrl: string) => string, header = 'location') {
    let url = '';
    const up = await upstream({ fallback: ({ res }) => respondWith(302, { [header]: location(url) })({ res } as never) });
    url = up.url;
    return up;
  }

  it('a Location at the upstream host goes to the origin and mount path the client used', async () => {
    const up = await redirecting((url) => `${url}/v1/new/place?x=1`);
    const app = expressGateway({ target: `${up.url}/v1` });

    const response = await request(app).get('/api/old').set('host', 'shop.example');

    expect(response.status).toBe(302);
    expect(response.headers.location).toBe('http://shop.example/api/new/place?x=1');
  });

  it('behind a trusted load balancer, the forwarded scheme and host', async () => {
    const up = await redirecting((url) => `${url}/done`);
    const app = expressGateway({ target: up.url, trustProxy: true });

    const response = await request(app).get('/api/x').set('x-forwarded-proto', 'https').set('x-forwarded-host', 'www.example');

    expect(response.headers.location).toBe('https://www.example/api/done');
  });

  it('a path-absolute Location under the target prefix gets the mount path (nginx directory redirects)', async () => {
    const up = await redirecting(() => '/v1/docs/');
    const app = expressGateway({ target: `${up.url}/v1` });

    const response = await request(app).get('/api/docs');

    expect(response.headers.location).toBe('/api/docs/');
  });

  it.each([
    { location: '/other', expected: 'http://shop.example/other' },
    { location: '/', expected: 'http://shop.example/' },
    { location: '/v2foo/x', expected: 'http://shop.example/v2foo/x' },
  ])('a Location at the upstream host outside the target path ($location) keeps only the client origin: no internal host, no wrong mount', async ({ location, expected }) => {
    const up = await redirecting((url) => `${url}${location}`);
    const app = expressGateway({ target: `${up.url}/v2` });

    const response = await request(app).get('/api/x').set('host', 'shop.example');

    expect(response.headers.location).toBe(expected);
  });

  it.each([
    { name: 'another site', location: () => 'https://login.example/auth?next=1' },
    { name: 'a path outside the target prefix', location: () => '/elsewhere' },
  ])('$name passes untouched', async ({ location }) => {
    const up = await redirecting(location);
    const app = expressGateway({ target: `${up.url}/v1` });

    const response = await request(app).get('/api/x');

    expect(response.headers.location).toBe(location());
  });

  it('Content-Location and Refresh are rewritten too; rewriteRedirects: false leaves all as sent', async () => {
    let url = '';
    const up = await upstream({
      fallback: ({ res }) => {
        res.writeHead(200, { 'content-location': `${url}/a`, refresh: `5; url=${url}/b`, 'content-length': 0 });
        res.end();
      },
    });
    url = up.url;
    const on = expressGateway({ target: up.url });
    const off = expressGateway({ target: up.url, rewriteRedirects: false });

    const rewritten = await request(on).get('/api/x').set('host', 'shop.example');
    const untouched = await request(off).get('/api/x').set('host', 'shop.example');

    expect([rewritten.headers['content-location'], rewritten.headers.refresh]).toStrictEqual(['http://shop.example/api/a', '5; url=http://shop.example/api/b']);
    expect([untouched.headers['content-location'], untouched.headers.refresh]).toStrictEqual([`${up.url}/a`, `5; url=${up.url}/b`]);
  });

  it('a Location at any host of a group is rewritten', async () => {
    const other = await upstream();
    const up = await redirecting(() => `${other.url}/moved`);
    const app = expressGateway({ target: [up.url, other.url], balance: 'round-robin' });

    const response = await request(app).get('/api/x').set('host', 'shop.example');

    expect(response.headers.location).toBe('http://shop.example/api/moved');
  });
});

describe('cookieDomainRewrite / cookiePathRewrite', () => {
  const cookies = ['a=1; Domain=internal.local; Path=/v1; HttpOnly', 'b=2; domain=other.example; path=/v1/x; Secure', 'c=3'];

  it.each([
    { name: 'one value for all', options: { cookieDomainRewrite: 'shop.example', cookiePathRewrite: '/' }, expected: ['a=1; Domain=shop.example; Path=/; HttpOnly', 'b=2; domain=shop.example; path=/; Secure', 'c=3'] },
    {
      name: 'a map, with * and an empty value that removes',
      options: { cookieDomainRewrite: { 'internal.local': 'shop.example', '*': '' }, cookiePathRewrite: { '/v1': '/api' } },
      expected: ['a=1; Domain=shop.example; Path=/api; HttpOnly', 'b=2; path=/v1/x; Secure', 'c=3'],
    },
    { name: 'false (the default)', options: {}, expected: cookies },
  ])('$name', async ({ options, expected }) => {
    const up = await upstream({ fallback: respondWith(200, { 'set-cookie': cookies }) });
    const app = expressGateway({ target: up.url, ...options });

    const response = await request(app).get('/api/x');

    expect(response.headers['set-cookie']).toStrictEqual(expected);
  });
});

describe('transformResponse', () => {
  const json = JSON.stringify({ name: 'widget', internal: 'secret' });
  const strip = (body: Buffer): string => {
    const parsed = JSON.parse(body.toString()) as Record<string, unknown>;
    delete parsed.internal;
    return JSON.stringify(parsed);
  };
  const jsonOnly = (_status: number, headers: Record<string, unknown>): boolean => String(headers['content-type']).startsWith('application/json');

  it.each([
    { encoding: undefined, encode: (b: Buffer) => b, decode: (b: Buffer) => b },
    { encoding: 'gzip', encode: gzipSync, decode: gunzipSync },
    { encoding: 'br', encode: brotliCompressSync, decode: brotliDecompressSync },
  ])('a matching $encoding body is decoded, transformed, re-encoded the same way, with its Content-Length fixed', async ({ encoding, encode, decode }) => {
    const encoded = encode(Buffer.from(json));
    const up = await upstream({
      fallback: ({ res }) => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': encoded.length, etag: '"v1"', ...(encoding && { 'content-encoding': encoding }) });
        res.end(encoded);
      },
    });
    const gateway = await listen(expressGateway({ target: up.url, transformResponse: { match: jsonOnly, transform: strip } }));

    const response = await rawGet(`${gateway.url}/api/x`, { 'accept-encoding': 'gzip, br' });

    expect(response.headers['content-encoding']).toBe(encoding);
    expect(response.headers['content-length']).toBe(String(response.body.length));
    expect(response.headers.etag).toBeUndefined();
    expect(decode(response.body).toString()).toBe('{"name":"widget"}');
  });

  it('a body over maxBytes passes through untransformed, byte for byte', async () => {
    const big = JSON.stringify({ internal: 'x'.repeat(5000) });
    const up = await upstream({ fallback: respondWith(200, { 'content-type': 'application/json' }, big) });
    const app = expressGateway({ target: up.url, transformResponse: { match: jsonOnly, transform: () => 'changed', maxBytes: 1000 } });

    const response = await request(app).get('/api/x');

    expect(response.text).toBe(big);
  });

  it('a chunked body that grows past maxBytes passes through untransformed too', async () => {
    const up = await upstream({
      fallback: ({ res }) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('['.padEnd(800, ' '));
        res.end(']'.padStart(800, ' '));
      },
    });
    const app = expressGateway({ target: up.url, transformResponse: { match: jsonOnly, transform: () => 'changed', maxBytes: 1000 } });

    const response = await request(app).get('/api/x');

    expect(response.text).toBe(`${'['.padEnd(800, ' ')}${']'.padStart(800, ' ')}`);
  });

  it('a response that does not match streams untouched, and HEAD is never transformed', async () => {
    const up = await upstream({ fallback: faults.respond(200, 'plain text') });
    const app = expressGateway({ target: up.url, transformResponse: { match: jsonOnly, transform: () => 'changed' } });

    const response = await request(app).get('/api/x');

    expect(response.text).toBe('plain text');
  });

  it('a transform that throws: PROXY_INTERNAL_ERROR with the contract, no byte of the body sent', async () => {
    const up = await upstream({ fallback: respondWith(200, { 'content-type': 'application/json' }, json) });
    const app = expressGateway({
      target: up.url,
      retry: false,
      transformResponse: {
        match: jsonOnly,
        transform: () => {
          throw new Error('transform bug');
        },
      },
    });

    const response = await request(app).get('/api/x');

    expect(response.status).toBe(502);
    expect((response.body as { code: string }).code).toBe('PROXY_INTERNAL_ERROR');
    expect(response.text).not.toContain('secret');
  });

  it('an async transform is awaited', async () => {
    const up = await upstream({ fallback: respondWith(200, { 'content-type': 'application/json' }, json) });
    const app = expressGateway({ target: up.url, transformResponse: { match: jsonOnly, transform: async (body) => promisify(setImmediate)().then(() => strip(body)) } });

    const response = await request(app).get('/api/x');

    expect(response.text).toBe('{"name":"widget"}');
  });
});

// The same contract suite against every adapter and every supported
// framework major: one test per failure class, retries, the breaker,
// streaming, breaks mid-body, client abort and bodies already parsed.

import { createHash } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../src/index.js';
import { faults } from '../src/testing/index.js';
import { cases, expectContract } from './cases.js';
import { frameworks } from './frameworks.js';
import { onCleanup, rawGet, upstream } from './support.js';

const MiB = 1024 * 1024;
const fastRetry = { minDelay: 1, maxDelay: 1 };

function bytes(size: number): Buffer {
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i += 1) data[i] = (i * 31 + 7) % 256;
  return data;
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

describe.each(frameworks)('$name', ({ mount, mountPath }) => {
  it('rewrites: pathRewrite, headers both ways, a redirect to the upstream host, cookie domain', async () => {
    let url = '';
    const up = await upstream({
      fallback: ({ req, res }) => {
        res.writeHead(302, {
          location: `${url}/v1/after`,
          'set-cookie': 'sid=1; Domain=internal.local; Path=/',
          'x-seen-path': req.url ?? '',
          'x-seen-key': String(req.headers['x-api-key']),
          'content-length': 0,
        });
        res.end();
      },
    });
    url = up.url;
    const base = await mount({
      target: `${up.url}/v1`,
      pathRewrite: { '^/old': '/new' },
      headers: { request: (headers) => Promise.resolve({ ...headers, 'x-api-key': 'k1' }), response: { 'x-gateway': 'rp' } },
      cookieDomainRewrite: 'shop.example',
    });

    const response = await request(base).get('/api/old/7').set('host', 'shop.example');

    expect(response.status).toBe(302);
    expect([response.headers['x-seen-path'], response.headers['x-seen-key'], response.headers['x-gateway']]).toStrictEqual(['/v1/new/7', 'k1', 'rp']);
    expect(response.headers.location).toBe(`http://shop.example${mountPath}/after`);
    expect(response.headers['set-cookie']).toStrictEqual(['sid=1; Domain=shop.example; Path=/']);
  });

  it('one shape: hooks see req.url as the client sent it, mount prefix included; events carry the path sent upstream and the origin', async () => {
    const up = await upstream({ fallback: faults.respond(200, 'body') });
    const bad = await upstream({ fallback: faults.status(503) });
    const seen: string[] = [];
    const events: { path: string; target: string }[] = [];
    const hosts: string[] = [];
    const registry = new UpstreamRegistry();
    onCleanup(() => registry.close());
    const base = await mount({
      target: [`${bad.url}/v1`, `${up.url}/v1`],
      balance: 'round-robin',
      slowStart: 0,
      registry,
      retry: fastRetry,
      outlierDetection: { consecutiveFailures: 1 },
      pathRewrite: (path, req) => {
        seen.push(`rewrite ${path} ${req.url}`);
        return path.replace(/^\/old/, '/new');
      },
      headers: {
        request: async (headers, req) => {
          await new Promise((resolve) => setImmediate(resolve));
          seen.push(`headers ${req.url}`);
          return headers;
        },
        response: (headers, { req }) => (seen.push(`response ${req.url}`), headers),
      },
      transformResponse: { match: () => true, transform: (body, { req }) => (seen.push(`transform ${req.url}`), body) },
      hooks: {
        onRetry: (event) => events.push({ path: event.path, target: event.target }),
        onHostStateChange: (change) => hosts.push(`${change.host} ${change.to}`),
      },
    });

    const response = await request(base).get('/api/old/7?x=1');

    expect([response.status, response.text]).toStrictEqual([200, 'body']);
    expect(seen).toStrictEqual(['rewrite /old/7?x=1 /api/old/7?x=1', 'headers /api/old/7?x=1', 'response /api/old/7?x=1', 'transform /api/old/7?x=1']);
    expect([...bad.requests, ...up.requests].map((r) => r.url)).toStrictEqual(['/v1/new/7?x=1', '/v1/new/7?x=1']);
    expect(events).toStrictEqual([{ path: '/v1/new/7?x=1', target: bad.url }]);
    // One host id, its origin, in onRetry, onHostStateChange and the snapshot; the snapshot's url adds the target's path.
    expect(hosts).toStrictEqual([`${bad.url} ejected`]);
    expect(registry.snapshot()[0]?.hosts.map((h) => [h.origin, h.url])).toStrictEqual([
      [bad.url, `${bad.url}/v1`],
      [up.url, `${up.url}/v1`],
    ]);
  });

  it.each(cases)('$code: $name', async ({ code, proxyStatus, setup, timeout, attempts = 3 }) => {
    const { target, dispatcher } = await setup();
    const base = await mount({ target, name: 'orders', retry: fastRetry, ...(dispatcher && { dispatcher }), ...(timeout && { timeout }) });

    const response = await request(base).get('/api/items?page=2').set('x-request-id', 'req-42');

    expectContract(response, code, `resilient-proxy; error=${proxyStatus}`, { attempts });
  });

  it('UPSTREAM_STATUS with the upstream Retry-After; HEAD gets no body', async () => {
    const { url } = await upstream({ fallback: faults.status(503, { retryAfter: 9 }) });
    const base = await mount({ target: url, name: 'orders' });

    const response = await request(base).get('/api/items').set('x-request-id', 'req-42');
    const head = await request(base).head('/api/items').set('x-request-id', 'req-42');

    expectContract(response, 'UPSTREAM_STATUS', 'resilient-proxy; received-status=503');
    expect(response.headers['retry-after']).toBe('9');
    expect([head.status, head.headers['proxy-status'], head.text]).toStrictEqual([502, 'resilient-proxy; received-status=503', undefined]);
  });

  it('passes a response through, with the mount prefix stripped and the query kept', async () => {
    const up = await upstream({ fallback: faults.echo() });
    const base = await mount({ target: `${up.url}/v1` });

    const response = await request(base).get('/api/orders/7?expand=lines').set('x-custom', 'yes');

    expect(response.status).toBe(200);
    const echoed = response.body as { method: string; url: string; headers: Record<string, string> };
    expect(echoed.url).toBe('/v1/orders/7?expand=lines');
    expect(echoed.headers['x-custom']).toBe('yes');
    expect(echoed.headers['x-forwarded-for']).toBe('127.0.0.1');
  });

  it('retries a GET that fails twice, then returns the upstream 200', async () => {
    const up = await upstream({ fallback: faults.respond(200, 'third time') });
    up.enqueue(faults.resetBeforeHeaders(), faults.status(502));
    const base = await mount({ target: up.url, retry: fastRetry });

    const response = await request(base).get('/api/x');

    expect([response.status, response.text]).toStrictEqual([200, 'third time']);
    expect(up.requests.map((r) => r.headers['x-attempt-count'])).toStrictEqual(['1', '2', '3']);
  });

  it('never retries a POST the upstream has read', async () => {
    const up = await upstream({ fallback: faults.resetBeforeHeaders() });
    const base = await mount({ target: up.url, retry: fastRetry });

    const response = await request(base).post('/api/pay').set('content-type', 'application/octet-stream').send(Buffer.from('once'));

    expect(response.body).toMatchObject({ code: 'UPSTREAM_RESET', attempts: 1 });
    expect(up.requests).toHaveLength(1);
  });

  it('opens the circuit and then refuses without calling the upstream', async () => {
    const up = await upstream({ fallback: faults.status(503) });
    const base = await mount({ target: up.url, name: 'orders', retry: false, breaker: { volumeThreshold: 2, resetTimeout: 60_000 } });

    await request(base).get('/api/x');
    await request(base).get('/api/x');
    const refused = await request(base).get('/api/x').set('x-request-id', 'req-42');

    expectContract(refused, 'CIRCUIT_OPEN', 'resilient-proxy; error=destination_unavailable', { attempts: 0 });
    expect(refused.headers['retry-after']).toBe('60');
    expect(up.requests).toHaveLength(2);
  });

  it('streams 8 MiB up and 8 MiB down byte for byte', async () => {
    const body = bytes(8 * MiB);
    const up = await upstream({ fallback: faults.echo({ body: true }), recordBodyBytes: 8 * MiB });
    const base = await mount({ target: up.url });

    const received = await new Promise<Buffer>((resolve, reject) => {
      const client = httpRequest(`${base}/api/upload`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'content-length': body.length } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.once('end', () => resolve(Buffer.concat(chunks)));
      });
      client.once('error', reject);
      void pipeline(Readable.from([body.subarray(0, 4 * MiB), body.subarray(4 * MiB)]), client);
    });

    expect(up.requests[0]?.bodySha256).toBe(sha256(body));
    expect(sha256(received)).toBe(sha256(body));
  });

  it.each(['text/event-stream', 'application/json'])('%s: a head whose body comes later reaches the client first (the hold ends, the framework sends it), then the body, reason phrase kept', async (type) => {
    const release: ((body: string) => void)[] = [];
    const up = await upstream({
      fallback: ({ res }) => {
        res.writeHead(200, 'Streaming', { 'content-type': type, 'cache-control': 'no-cache' });
        res.flushHeaders();
        release.push((body) => res.end(body));
      },
    });
    const base = await mount({ target: up.url, timeout: { idle: 10_000 } });

    const response = new Promise<IncomingMessage>((resolve, reject) => {
      const client = httpRequest(`${base}/api/events`, { agent: false }, resolve);
      client.once('error', reject);
      client.end();
    });
    // The upstream sends its body only once the client has the head: a head held for its body would never arrive.
    const res = await response;
    expect([res.statusCode, res.statusMessage, res.headers['content-type']]).toStrictEqual([200, 'Streaming', type]);
    release.shift()?.('data: first\n\n');
    let text = '';
    res.setEncoding('utf8');
    for await (const chunk of res) text += chunk as string;

    expect([text, res.complete]).toStrictEqual(['data: first\n\n', true]);
    expect(up.requests).toHaveLength(1);
  });

  it('cuts the client connection when the upstream breaks mid-body', async () => {
    const { url } = await upstream({ fallback: faults.resetMidBody(4096, 100) });
    const base = await mount({ target: url });

    const result = await rawGet(`${base}/api/file`);

    expect([result.status, result.ending]).toStrictEqual([200, 'truncated']);
  });

  it('cancels the upstream request when the client leaves', async () => {
    const up = await upstream({ fallback: faults.hang() });
    const base = await mount({ target: up.url });

    const client = httpRequest(`${base}/api/slow`, { agent: false });
    client.on('error', () => undefined);
    client.end();
    await up.waitForRequests(1);
    client.destroy();

    await up.requests[0]?.closed;
  });

  it("forwards a JSON body intact after the app's own body parser", async () => {
    const up = await upstream();
    const base = await mount({ target: up.url }, true);
    const json = '{"qty":3,"note":"ünïcode"}';

    const response = await request(base).post('/api/orders').set('content-type', 'application/json').send(json);

    expect(response.status).toBe(200);
    expect(up.requests[0]?.body.toString('utf8')).toBe(json);
    expect(up.requests[0]?.headers['content-length']).toBe(String(Buffer.byteLength(json)));
  });
});


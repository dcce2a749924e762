// Malformed upstream framing, written byte for byte by raw `net` servers: a
// 304 with Content-Length is a valid 304; every malformed answer is the
// upstream's UPSTREAM_BAD_RESPONSE (retried when safe, counted by the
// breaker, covered by stale on error), never the proxy's internal error, and
// an interim `100 Continue` undici did not ask for is not a reset.

import { once } from 'node:events';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import type { BreakerStateChange, ProxyOptions } from '../src/index.js';
import { expressGateway, listen, onCleanup } from './support.js';

/** A raw upstream: each request head gets the next of `answers` (the last one repeats); an answer is written, then the connection ends. */
async function rawUpstream(answers: readonly string[]): Promise<{ url: string; requests: () => number }> {
  let requests = 0;
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let head = '';
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      head = '';
      const answer = answers[Math.min(requests, answers.length - 1)] ?? '';
      requests += 1;
      socket.end(answer);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onCleanup(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests: () => requests };
}

const MALFORMED: readonly { name: string; bytes: string }[] = [
  { name: 'a 204 with a body', bytes: 'HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\nhello' },
  { name: 'Content-Length and Transfer-Encoding', bytes: 'HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n' },
  { name: 'two differing Content-Lengths', bytes: 'HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!' },
  { name: 'status 099', bytes: 'HTTP/1.1 099 Odd\r\ncontent-length: 2\r\n\r\nok' },
  { name: 'a 101 without Upgrade to a plain request', bytes: 'HTTP/1.1 101 Switching Protocols\r\n\r\n' },
  { name: 'an unsolicited 100 Continue before the 200', bytes: 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok' },
];

function gateway(url: string, options: Partial<ProxyOptions> = {}): ReturnType<typeof expressGateway> {
  return expressGateway({ target: url, name: 'orders', breaker: false, retry: { minDelay: 1, maxDelay: 1 }, ...options });
}

describe('a 304 with Content-Length', () => {
  it('is relayed as a 304, headers included', async () => {
    const up = await rawUpstream(['HTTP/1.1 304 Not Modified\r\ncontent-length: 1234\r\netag: "v7"\r\ncache-control: max-age=60\r\n\r\n']);

    const response = await request(gateway(up.url)).get('/api/x').set('if-none-match', '"v7"');

    expect(response.status).toBe(304);
    expect([response.headers.etag, response.headers['cache-control'], response.headers['content-length']]).toStrictEqual(['"v7"', 'max-age=60', '1234']);
    expect(response.text).toBe('');
    expect(up.requests()).toBe(1);
  });
});

describe.each(MALFORMED)('malformed framing: $name', ({ bytes }) => {
  it('is UPSTREAM_BAD_RESPONSE, retried on a GET', async () => {
    const up = await rawUpstream([bytes]);

    const response = await request(gateway(up.url)).get('/api/x');

    expect(response.status).toBe(502);
    expect(response.headers['proxy-status']).toBe('resilient-proxy; error=http_protocol_error');
    expect(response.body).toMatchObject({ code: 'UPSTREAM_BAD_RESPONSE', attempts: 3 });
    expect(up.requests()).toBe(3);
  });

  it('is not retried on a POST, which the upstream has read', async () => {
    const up = await rawUpstream([bytes]);

    const response = await request(gateway(up.url)).post('/api/x').send('order');

    expect(response.body).toMatchObject({ code: 'UPSTREAM_BAD_RESPONSE', attempts: 1 });
    expect(up.requests()).toBe(1);
  });

  it('is counted by the breaker', async () => {
    const up = await rawUpstream([bytes]);
    const changes: BreakerStateChange[] = [];
    const app = gateway(up.url, { retry: false, breaker: { volumeThreshold: 1, errorThresholdPercentage: 1 }, hooks: { onBreakerStateChange: (c) => changes.push(c) } });

    await request(app).get('/api/x');
    const refused = await request(app).get('/api/x');

    expect(changes.map((c) => c.to)).toStrictEqual(['open']);
    expect(refused.body).toMatchObject({ code: 'CIRCUIT_OPEN' });
  });

  it('is covered by stale on error', async () => {
    const up = await rawUpstream(['HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 4\r\n\r\ngood', bytes]);
    // One server: the kept response is keyed by the Host the client used.
    const { url } = await listen(gateway(up.url, { retry: false, staleIfError: true }));

    await request(url).get('/api/x');
    const stale = await request(url).get('/api/x');

    expect([stale.status, stale.text]).toStrictEqual([200, 'good']);
    expect(stale.headers['cache-status']).toBe('resilient-proxy; fwd=stale; detail=UPSTREAM_BAD_RESPONSE');
  });
});

// The public test helpers (`resilient-proxy/testing`) do what they promise,
// seen from a plain Node client with no proxy in between.

import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { setTimeout as delay } from 'node:timers/promises';
import { request as undiciRequest, type Dispatcher } from 'undici';
import { describe, expect, it } from 'vitest';
import {
  connectHangDispatcher,
  dnsFailureDispatcher,
  faults,
  refusedUrl,
  startFaultUpstream,
  unreachableDispatcher,
} from '../src/testing/index.js';
import { onCleanup, rawGet, upstream } from './support.js';

/** The error code a plain client gets, or 'none' if it got a response. */
function clientError(url: string): Promise<string> {
  return new Promise((resolve) => {
    const req = httpRequest(url, { agent: false }, (res) => {
      res.resume();
      res.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
      res.once('end', () => resolve('none'));
    });
    req.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
    req.end();
  });
}

describe('faults, as a plain client sees them', () => {
  it('respond and status answer exactly as asked', async () => {
    const up = await upstream();
    up.enqueue(faults.respond(201, 'made', { 'x-id': '7' }), faults.status(503, { retryAfter: 5 }));

    const made = await rawGet(up.url);
    const unavailable = await rawGet(up.url);

    expect([made.status, made.body.toString(), made.headers['x-id']]).toStrictEqual([201, 'made', '7']);
    expect([unavailable.status, unavailable.headers['retry-after']]).toStrictEqual([503, '5']);
  });

  it.each([
    { name: 'resetBeforeHeaders', behaviour: faults.resetBeforeHeaders(), code: 'ECONNRESET' },
    { name: 'closeBeforeHeaders', behaviour: faults.closeBeforeHeaders(), code: 'ECONNRESET' },
    { name: 'malformedStatusLine', behaviour: faults.malformedStatusLine(), code: 'HPE_INVALID_STATUS' },
    { name: 'oversizedHeaders', behaviour: faults.oversizedHeaders(), code: 'HPE_HEADER_OVERFLOW' },
    { name: 'badChunk', behaviour: faults.badChunk(), code: 'HPE_INVALID_CHUNK_SIZE' },
  ])('$name makes the client fail with $code', async ({ behaviour, code }) => {
    const { url } = await upstream({ fallback: behaviour });
    expect(await clientError(url)).toBe(code);
  });

  it.each([
    { name: 'closeMidBody', behaviour: faults.closeMidBody(1000, 10) },
    { name: 'resetMidBody', behaviour: faults.resetMidBody(1000, 10) },
  ])('$name sends headers and part of the body, then cuts the connection', async ({ behaviour }) => {
    const { url } = await upstream({ fallback: behaviour });
    const result = await rawGet(url);
    expect([result.status, result.headers['content-length'], result.body.length, result.ending]).toStrictEqual([200, '1000', 10, 'truncated']);
  });

  it('hang and headersThenStall hold the client until the upstream closes', async () => {
    const up = await startFaultUpstream({ fallback: faults.hang() });
    up.enqueue(faults.headersThenStall(1000, 10));
    const stalled = rawGet(up.url);
    const hanging = clientError(up.url);
    await up.waitForRequests(2);

    await up.close();

    expect(await stalled).toMatchObject({ status: 200, ending: 'truncated' });
    expect((await stalled).body.length).toBe(10);
    expect(await hanging).toBe('ECONNRESET');
  });

  it('raw writes exactly the bytes given', async () => {
    const { url } = await upstream({ fallback: faults.raw('HTTP/1.1 418 I\'m a teapot\r\ncontent-length: 4\r\n\r\ntea!') });
    const result = await rawGet(url);
    expect([result.status, result.body.toString()]).toStrictEqual([418, 'tea!']);
  });
});

describe('the recording', () => {
  it('records every request, plays the queue in order and then the fallback', async () => {
    const up = await upstream({ fallback: faults.echo() });
    up.enqueue(faults.status(500), faults.status(502));

    const statuses: number[] = [];
    for (let i = 0; i < 3; i += 1) statuses.push((await rawGet(`${up.url}/item/${i}`, { 'x-n': String(i) })).status);

    expect(statuses).toStrictEqual([500, 502, 200]);
    expect(up.requests.map((r) => [r.method, r.url, r.headers['x-n']])).toStrictEqual([
      ['GET', '/item/0', '0'],
      ['GET', '/item/1', '1'],
      ['GET', '/item/2', '2'],
    ]);
  });

  it('records bodies with their size and SHA-256, and counts connections', async () => {
    const up = await upstream({ recordBodyBytes: 4 });
    await up.waitForRequests(0);
    await new Promise<void>((resolve) => {
      const req = httpRequest(up.url, { method: 'POST', agent: false }, (res) => {
        res.resume();
        res.once('end', resolve);
      });
      req.end('hello world');
    });

    expect(up.requests[0]).toMatchObject({
      method: 'POST',
      bodyBytes: 11,
      bodySha256: 'b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9',
    });
    expect(up.requests[0]?.body.toString()).toBe('hell');
    expect(up.connections).toBe(1);
  });

  it('echo({ body: true }) sends the request body back', async () => {
    const up = await upstream({ fallback: faults.echo({ body: true }) });
    const body = await new Promise<string>((resolve) => {
      const req = httpRequest(up.url, { method: 'PUT', agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
        res.once('end', () => resolve(text));
      });
      req.end('round trip');
    });
    expect(body).toBe('round trip');
  });
});

describe('TLS', () => {
  it('serves HTTPS with the given certificate', async () => {
    const key = readFileSync(new URL('./fixtures/self-signed.key', import.meta.url));
    const cert = readFileSync(new URL('./fixtures/self-signed.crt', import.meta.url));
    const up = await upstream({ tls: { key, cert }, fallback: faults.respond(200, 'secure') });

    const text = await new Promise<string>((resolve, reject) => {
      httpsRequest(up.url, { ca: cert, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
        res.once('end', () => resolve(body));
      })
        .once('error', reject)
        .end();
    });

    expect(up.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(text).toBe('secure');
  });
});

describe('fault dispatchers', () => {
  async function failureCode(dispatcher: Dispatcher): Promise<unknown> {
    try {
      await undiciRequest('http://orders.test/', { dispatcher });
      return 'none';
    } catch (error) {
      return (error as { code?: unknown }).code;
    }
  }

  it.each([
    { name: 'dnsFailureDispatcher()', make: () => dnsFailureDispatcher(), code: 'ENOTFOUND' },
    { name: "dnsFailureDispatcher('EAI_AGAIN')", make: () => dnsFailureDispatcher('EAI_AGAIN'), code: 'EAI_AGAIN' },
    { name: 'unreachableDispatcher()', make: () => unreachableDispatcher(), code: 'EHOSTUNREACH' },
    { name: "unreachableDispatcher('EACCES')", make: () => unreachableDispatcher('EACCES'), code: 'EACCES' },
  ])('$name fails a request with $code', async ({ make, code }) => {
    const dispatcher = make();
    onCleanup(() => dispatcher.destroy());
    expect(await failureCode(dispatcher)).toBe(code);
  });

  it('connectHangDispatcher() never connects: the request waits until the dispatcher is destroyed', async () => {
    const dispatcher = connectHangDispatcher();
    const outcome = failureCode(dispatcher);
    // Long enough for any loopback connect to have completed.
    const early = await Promise.race([outcome, delay(100).then(() => 'still waiting')]);
    await dispatcher.destroy();

    expect(early).toBe('still waiting');
    expect(await outcome).toBe('UND_ERR_DESTROYED');
  });

  it('refusedUrl() names a port where connections are refused', async () => {
    const url = await refusedUrl();
    expect(await clientError(url)).toBe('ECONNREFUSED');
  });
});

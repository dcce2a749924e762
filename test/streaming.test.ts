// Bodies stream both ways; a response that breaks after its headers reaches
// the client as a cut connection, never a clean end or a hang; a client that
// leaves cancels the upstream request.

import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import express from 'express';
import express4 from 'express4';
import request from 'supertest';
import { Agent, type Dispatcher } from 'undici';
import { describe, expect, it } from 'vitest';
import { keepRawBody, type FailureEvent } from '../src/index.js';
import { faults, type Behaviour } from '../src/testing/index.js';
import { expressGateway, listen, onCleanup, proxy, rawGet, upstream } from './support.js';

const MiB = 1024 * 1024;

/** A deterministic body of `size` bytes, produced in 64 KiB chunks. */
function* pattern(size: number): Generator<Buffer> {
  const chunk = Buffer.alloc(64 * 1024, 'abcdefghijklmnopqrstuvwxyz0123456789');
  for (let sent = 0; sent < size; sent += chunk.length) yield chunk.subarray(0, Math.min(chunk.length, size - sent));
}

function sha256Of(size: number): string {
  const hash = createHash('sha256');
  for (const chunk of pattern(size)) hash.update(chunk);
  return hash.digest('hex');
}

function streaming(size: number): Behaviour {
  return ({ res }) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
    void pipeline(Readable.from(pattern(size)), res).catch(() => undefined);
  };
}

function recordFailures(): { events: FailureEvent[]; onFailure: (event: FailureEvent) => void; next: () => Promise<FailureEvent> } {
  const events: FailureEvent[] = [];
  const waiting: ((event: FailureEvent) => void)[] = [];
  return {
    events,
    onFailure: (event) => {
      events.push(event);
      waiting.shift()?.(event);
    },
    next: () => {
      const seen = events[events.length - 1];
      return seen === undefined ? new Promise((resolve) => waiting.push(resolve)) : Promise.resolve(seen);
    },
  };
}

describe('a response that breaks after its headers were sent', () => {
  it.each([
    { name: 'clean close mid-body', behaviour: faults.closeMidBody(1024, 10), proxyStatus: 'http_response_incomplete' },
    { name: 'reset mid-body', behaviour: faults.resetMidBody(1024, 10), proxyStatus: 'http_response_incomplete' },
    { name: 'invalid chunk', behaviour: faults.badChunk(), proxyStatus: 'http_response_incomplete' },
    { name: 'stall past the idle timeout', behaviour: faults.headersThenStall(1024, 10), proxyStatus: 'connection_read_timeout' },
  ])('$name: the client sees a truncated response and the hook sees UPSTREAM_RESPONSE_INCOMPLETE', async ({ behaviour, proxyStatus }) => {
    const { url } = await upstream({ fallback: behaviour });
    const failures = recordFailures();
    const gateway = await listen(
      expressGateway({ target: url, name: 'orders', timeout: { idle: 100 }, hooks: { onFailure: failures.onFailure } }),
    );

    const result = await rawGet(`${gateway.url}/api/file`);

    expect(result.status).toBe(200);
    expect(result.ending).toBe('truncated');
    const event = await failures.next();
    expect(event).toMatchObject({ code: 'UPSTREAM_RESPONSE_INCOMPLETE', proxyStatus, phase: 'body', statusCode: null, attempts: 1 });
    expect(failures.events).toHaveLength(1);
  });
});

describe('an upstream that breaks after its headers but before any body byte', () => {
  // Nothing has reached the client yet (Node sends headers with the first body
  // byte), so this is still a failure before headers: the contract, and a retry when safe.
  const headThenReset = faults.raw('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n', 'reset');
  const headThenSilence = faults.raw('HTTP/1.1 200 OK\r\n*:\r\n\r\n', 'hang');

  it.each([
    { name: 'reset', behaviour: headThenReset, code: 'UPSTREAM_RESET', proxyStatus: 'connection_terminated' },
    { name: 'silence past the idle timeout', behaviour: headThenSilence, code: 'UPSTREAM_RESPONSE_TIMEOUT', proxyStatus: 'http_response_timeout' },
  ])('$name: the client gets the 502 contract, not a cut connection', async ({ behaviour, code, proxyStatus }) => {
    const { url } = await upstream({ fallback: behaviour });
    const gateway = await listen(expressGateway({ target: url, retry: false, timeout: { idle: 100 } }));

    const result = await rawGet(`${gateway.url}/api/x`);

    expect([result.status, result.ending, result.headers['proxy-status']]).toStrictEqual([502, 'complete', `resilient-proxy; error=${proxyStatus}`]);
    expect((JSON.parse(result.body.toString()) as { code: string }).code).toBe(code);
  });

  it('a GET is retried, and the client sees only the good answer', async () => {
    const up = await upstream({ fallback: faults.respond(200, 'second try') });
    up.enqueue(headThenReset);

    const response = await request(expressGateway({ target: up.url, retry: { minDelay: 1, maxDelay: 1 } })).get('/api/x');

    expect([response.status, response.text]).toStrictEqual([200, 'second try']);
    expect(up.requests).toHaveLength(2);
  });
});

describe('a response head whose body comes later (event streams, long polls)', () => {
  /** An upstream that sends its head at once and its body only when the test says so. */
  async function slowBody(contentType: string) {
    const release: ((body: string) => void)[] = [];
    const up = await upstream({
      fallback: ({ res }) => {
        res.writeHead(200, 'Streaming', { 'content-type': contentType, 'cache-control': 'no-cache' });
        res.flushHeaders();
        release.push((body) => res.end(body));
      },
    });
    return { up, send: (body: string) => release.shift()?.(body) };
  }

  /** GETs `url`; the head is reported as soon as it arrives, then the body. */
  function getWithHead(url: string) {
    let onHead!: (head: { status: number; message: string | undefined; type: string | undefined }) => void;
    const head = new Promise<Parameters<typeof onHead>[0]>((resolve) => (onHead = resolve));
    const body = new Promise<{ text: string; ending: 'complete' | 'truncated' }>((resolve, reject) => {
      const client = httpRequest(url, { agent: false }, (res) => {
        onHead({ status: res.statusCode ?? 0, message: res.statusMessage, type: res.headers['content-type'] });
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.once('end', () => resolve({ text, ending: res.complete ? 'complete' : 'truncated' }));
        res.once('aborted', () => resolve({ text, ending: 'truncated' }));
        res.once('error', () => resolve({ text, ending: 'truncated' }));
      });
      client.once('error', reject);
      client.end();
    });
    return { head, body };
  }

  it.each(['text/event-stream', 'application/json'])('%s: the client gets the head before the first body byte exists, then the body; one upstream request', async (type) => {
    const { up, send } = await slowBody(type);
    const gateway = await listen(expressGateway({ target: up.url, timeout: { idle: 10_000 } }));

    const { head, body } = getWithHead(`${gateway.url}/api/events`);
    expect(await head).toStrictEqual({ status: 200, message: 'Streaming', type });
    send('data: first\n\n');

    expect(await body).toStrictEqual({ text: 'data: first\n\n', ending: 'complete' });
    expect(up.requests).toHaveLength(1);
  });

  it('a first byte later than timeout.idle: the head went out, so the stream is cut, never re-sent upstream', async () => {
    const { up } = await slowBody('text/event-stream');
    const failures = recordFailures();
    const gateway = await listen(expressGateway({ target: up.url, timeout: { idle: 150 }, hooks: { onFailure: failures.onFailure } }));

    const { head, body } = getWithHead(`${gateway.url}/api/events`);

    expect((await head).status).toBe(200);
    expect(await body).toStrictEqual({ text: '', ending: 'truncated' });
    expect((await failures.next()).code).toBe('UPSTREAM_RESPONSE_INCOMPLETE');
    expect(up.requests).toHaveLength(1);
  });

  it('the upstream reason phrase reaches the client', async () => {
    const up = await upstream({ fallback: faults.raw('HTTP/1.1 201 Made It\r\ncontent-length: 2\r\n\r\nok', 'end') });
    const result = await new Promise<string | undefined>((resolve, reject) => {
      void listen(expressGateway({ target: up.url })).then(({ url }) =>
        httpRequest(`${url}/api/x`, { agent: false }, (res) => {
          res.resume();
          resolve(res.statusMessage);
        })
          .once('error', reject)
          .end(),
      );
    });
    expect(result).toBe('Made It');
  });

  /** An interceptor that passes the head on at once, the body at once or a turn of the loop later, and the end only when released. */
  function endHeldBack(bodyLater: boolean): { dispatcher: Dispatcher; release: () => void } {
    let release = (): void => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    const agent = new Agent();
    onCleanup(() => agent.close());
    const dispatcher = agent.compose((dispatch) => (options, handler) =>
      dispatch(options, {
        onRequestStart: (controller, context) => handler.onRequestStart?.(controller, context),
        onResponseStart: (controller, status, headers, message) => handler.onResponseStart?.(controller, status, headers, message),
        onResponseData: (controller, chunk) => (bodyLater ? void setImmediate(() => handler.onResponseData?.(controller, chunk)) : handler.onResponseData?.(controller, chunk)),
        onResponseEnd: (controller, trailers) => void released.then(() => handler.onResponseEnd?.(controller, trailers)),
        onResponseError: (controller, error) => handler.onResponseError?.(controller, error),
      }),
    );
    return { dispatcher, release };
  }

  /** A GET whose first body chunk is reported as soon as it arrives, and the rest ('truncated' for a cut body) once it ends. */
  function firstChunk(url: string): Promise<{ status: number; first: string; rest: Promise<string> }> {
    return new Promise((resolve, reject) => {
      httpRequest(url, { agent: false }, (res) => {
        res.setEncoding('utf8');
        res.once('data', (first: string) => {
          let rest = '';
          res.on('data', (chunk: string) => (rest += chunk));
          resolve({ status: res.statusCode ?? 0, first, rest: new Promise((done) => res.once('end', () => done(res.complete ? rest : 'truncated'))) });
        });
      })
        .once('error', reject)
        .end();
    });
  }

  const hello: Behaviour = ({ res }) => res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 5 }).end('hello');

  it('a whole body in one chunk whose end comes later (a dispatcher that holds it) still reaches the client whole, head and body first', async () => {
    const up = await upstream({ fallback: hello });
    const { dispatcher, release } = endHeldBack(false);
    const gateway = await listen(expressGateway({ target: up.url, dispatcher }));

    // The body reaches the client before its end is released: it does not wait for the end.
    const received = await firstChunk(`${gateway.url}/api/x`);
    expect(received.status).toBe(200);
    expect(received.first).toBe('hello');
    release();

    expect(await received.rest).toBe('');
  });

  it('a whole body that comes after its head, its end held by the dispatcher, with timeout.idle at the hold (100 ms): sent when the hold runs out, not taken for a late first byte', async () => {
    const up = await upstream({ fallback: hello });
    // The body a turn of the event loop after its head (past the head's tick, well before the hold runs out).
    const { dispatcher, release } = endHeldBack(true);
    const gateway = await listen(expressGateway({ target: up.url, dispatcher, retry: false, timeout: { idle: 100 } }));

    const received = await firstChunk(`${gateway.url}/api/x`);
    expect(received.status).toBe(200);
    expect(received.first).toBe('hello');
    release();

    expect(await received.rest).toBe('');
  });
});

describe('a client that disconnects', () => {
  async function abortAfter(behaviour: Behaviour, when: 'request-sent' | 'first-byte') {
    const up = await upstream({ fallback: behaviour });
    const failures = recordFailures();
    const gateway = await listen(expressGateway({ target: up.url, hooks: { onFailure: failures.onFailure } }));
    const client = httpRequest(`${gateway.url}/api/slow`, { agent: false });
    client.on('error', () => undefined);
    if (when === 'first-byte') {
      client.on('response', (res) => res.once('data', () => client.destroy()));
    } else {
      void up.waitForRequests(1).then(() => client.destroy());
    }
    client.end();
    await up.waitForRequests(1);
    const [recorded] = up.requests;
    await recorded?.closed;
    return failures;
  }

  it('while the upstream has not answered: the upstream connection is closed and nothing is reported', async () => {
    const failures = await abortAfter(faults.hang(), 'request-sent');
    expect(failures.events).toStrictEqual([]);
  });

  it('while the body streams: the upstream connection is closed and nothing is reported', async () => {
    const failures = await abortAfter(faults.headersThenStall(10 * MiB, 1000), 'first-byte');
    expect(failures.events).toStrictEqual([]);
  });
});

describe('streaming', () => {
  it('passes a 64 MiB download through byte for byte', async () => {
    const size = 64 * MiB;
    const { url } = await upstream({ fallback: streaming(size) });
    const gateway = await listen(expressGateway({ target: url }));

    const hash = createHash('sha256');
    let received = 0;
    const status = await new Promise<number>((resolve, reject) => {
      httpRequest(`${gateway.url}/api/big`, { agent: false }, (res) => {
        res.on('data', (chunk: Buffer) => {
          received += chunk.length;
          hash.update(chunk);
        });
        res.once('end', () => resolve(res.statusCode ?? 0));
        res.once('error', reject);
      })
        .once('error', reject)
        .end();
    });

    expect(status).toBe(200);
    expect(received).toBe(size);
    expect(hash.digest('hex')).toBe(sha256Of(size));
  });

  it('streams a 64 MiB upload to the upstream byte for byte', async () => {
    const size = 64 * MiB;
    const up = await upstream({ recordBodyBytes: 0 });
    const gateway = await listen(expressGateway({ target: up.url }));

    const status = await new Promise<number>((resolve, reject) => {
      const client = httpRequest(`${gateway.url}/api/upload`, { method: 'PUT', agent: false, headers: { 'content-length': size } }, (res) => {
        res.resume();
        res.once('end', () => resolve(res.statusCode ?? 0));
      });
      client.once('error', reject);
      void pipeline(Readable.from(pattern(size)), client);
    });

    expect(status).toBe(200);
    expect(up.requests[0]).toMatchObject({ method: 'PUT', url: '/upload', bodyBytes: size, bodySha256: sha256Of(size) });
  });

  it('streams a chunked upload of unknown length', async () => {
    const up = await upstream({ fallback: faults.echo({ body: true }) });
    const gateway = await listen(expressGateway({ target: up.url }));

    const body = await new Promise<string>((resolve, reject) => {
      const client = httpRequest(`${gateway.url}/api/echo`, { method: 'POST', agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
        res.once('end', () => resolve(text));
      });
      client.once('error', reject);
      client.write('hello, ');
      client.end('world');
    });

    expect(body).toBe('hello, world');
    expect(up.requests[0]?.bodyBytes).toBe(12);
  });
});

describe('headers', () => {
  it('strips hop-by-hop request headers, replaces a client X-Forwarded-For and sets the other forwarded headers', async () => {
    const up = await upstream({ fallback: faults.echo() });
    const app = expressGateway({ target: up.url });

    const response = await request(app)
      .get('/api/who')
      .set('connection', 'keep-alive, x-hop-secret')
      .set('x-hop-secret', 'must not pass')
      .set('keep-alive', 'timeout=5')
      .set('proxy-authorization', 'Basic Zm9vOmJhcg==')
      .set('te', 'trailers, deflate')
      .set('x-forwarded-for', '203.0.113.7')
      .set('x-custom', 'kept');

    expect(response.status).toBe(200);
    const seen = (response.body as { headers: Record<string, string> }).headers;
    expect(seen['x-hop-secret']).toBeUndefined();
    expect(seen['keep-alive']).toBeUndefined();
    expect(seen['proxy-authorization']).toBeUndefined();
    expect(seen.te).toBe('trailers');
    expect(seen['x-custom']).toBe('kept');
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('http');
    expect(seen['x-forwarded-host']).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(seen['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('passes the client request id upstream unchanged', async () => {
    const up = await upstream({ fallback: faults.echo() });
    const response = await request(expressGateway({ target: up.url })).get('/api/x').set('x-request-id', 'abc-123');
    expect((response.body as { headers: Record<string, string> }).headers['x-request-id']).toBe('abc-123');
  });

  it('strips hop-by-hop response headers and keeps repeated ones such as Set-Cookie', async () => {
    const up = await upstream({
      fallback: faults.raw(
        'HTTP/1.1 201 Created\r\nconnection: x-up-hop\r\nx-up-hop: 1\r\nkeep-alive: timeout=5\r\nproxy-authenticate: Basic\r\n' +
          'set-cookie: a=1\r\nset-cookie: b=2\r\nx-kept: yes\r\ncontent-length: 5\r\n\r\nhello',
        'hang',
      ),
    });

    const response = await request(expressGateway({ target: up.url })).get('/api/x');

    expect(response.status).toBe(201);
    expect(response.text).toBe('hello');
    expect(response.headers['x-up-hop']).toBeUndefined();
    expect(response.headers['keep-alive']).toBeUndefined();
    expect(response.headers['proxy-authenticate']).toBeUndefined();
    expect(response.headers['set-cookie']).toStrictEqual(['a=1', 'b=2']);
    expect(response.headers['x-kept']).toBe('yes');
  });

  it('sends the target host by default and keeps the client Host with changeOrigin: false', async () => {
    const up = await upstream({ fallback: faults.echo() });
    const kept = await request(expressGateway({ target: up.url, changeOrigin: false })).get('/api/x').set('host', 'shop.example');
    const changed = await request(expressGateway({ target: up.url })).get('/api/x').set('host', 'shop.example');

    expect((kept.body as { headers: Record<string, string> }).headers.host).toBe('shop.example');
    expect((changed.body as { headers: Record<string, string> }).headers.host).toBe(new URL(up.url).host);
    expect((changed.body as { headers: Record<string, string> }).headers['x-forwarded-host']).toBe('shop.example');
  });
});

describe('paths and statuses', () => {
  it("prefixes the target's path: /api/x on a proxy to /v1 reaches /v1/x with its query", async () => {
    const up = await upstream({ fallback: faults.echo() });
    const response = await request(expressGateway({ target: `${up.url}/v1/` })).get('/api/orders/7?expand=lines');
    expect((response.body as { url: string }).url).toBe('/v1/orders/7?expand=lines');
  });

  it('forwards the full path as a bare node:http listener', async () => {
    const up = await upstream({ fallback: faults.echo() });
    const response = await request(proxy({ target: up.url })).get('/a/b?c=d');
    expect((response.body as { url: string }).url).toBe('/a/b?c=d');
  });

  it('passes statuses that are not failure statuses through untouched', async () => {
    const up = await upstream();
    up.enqueue(faults.respond(404, 'nope'), faults.respond(500, 'boom'), faults.status(503));
    const app = expressGateway({ target: up.url, failureStatuses: [] });

    const notFound = await request(app).get('/api/x');
    const serverError = await request(app).get('/api/x');
    const unavailable = await request(app).get('/api/x');

    expect([notFound.status, notFound.text]).toStrictEqual([404, 'nope']);
    expect([serverError.status, serverError.text]).toStrictEqual([500, 'boom']);
    expect(unavailable.status).toBe(503);
  });
});

describe('bodies already read by a body parser', () => {
  it.each([
    { parser: 'express.json()', use: express.json(), type: 'application/json', send: { a: 1, list: ['x', 'y'] }, expected: '{"a":1,"list":["x","y"]}' },
    { parser: 'express.urlencoded()', use: express.urlencoded({ extended: true }), type: 'application/x-www-form-urlencoded', send: 'a=1&b%5Bc%5D=d', expected: 'a=1&b%5Bc%5D=d' },
    { parser: 'express.text()', use: express.text(), type: 'text/plain', send: 'plain words', expected: 'plain words' },
    { parser: 'express.raw()', use: express.raw(), type: 'application/octet-stream', send: Buffer.from([0, 1, 2, 255]), expected: Buffer.from([0, 1, 2, 255]).toString('latin1') },
  ])('$parser: forwarded intact with a correct Content-Length', async ({ use, type, send, expected }) => {
    const up = await upstream();
    const app = expressGateway({ target: up.url }, (app) => app.use(use));

    const response = await request(app).post('/api/items').set('content-type', type).send(send);

    expect(response.status).toBe(200);
    const [recorded] = up.requests;
    expect(recorded?.body.toString('latin1')).toBe(expected);
    expect(recorded?.headers['content-length']).toBe(String(Buffer.byteLength(expected, 'latin1')));
  });
});

describe('parsed bodies keep their meaning', () => {
  const FORM = 'a=1&a=2&b%5Bc%5D=d&e=';

  for (const [version, factory] of [
    ['Express 5', express],
    ['Express 4', express4],
  ] as const) {
    it.each([true, false])(`${version}, express.urlencoded({ extended: %s }) without raw bytes: repeated keys stay repeated`, async (extended) => {
      const up = await upstream();
      const app = factory();
      app.use(factory.urlencoded({ extended }));
      app.use('/api', proxy({ target: up.url }));

      const response = await request(app).post('/api/form').set('content-type', 'application/x-www-form-urlencoded').send('a=1&a=2&e=');

      expect(response.status).toBe(200);
      expect(up.requests[0]?.body.toString()).toBe('a=1&a=2&e=');
    });

    it.each([
      { parser: 'json', type: 'application/json', send: '{"n":12345678901234567890,"k":1,"k":2,  "f":1.50}' },
      { parser: 'urlencoded', type: 'application/x-www-form-urlencoded', send: FORM },
      { parser: 'text', type: 'text/plain; charset=utf-8', send: 'plain ✓ words' },
    ])(`${version}, express.$parser({ verify: keepRawBody }): the exact bytes are forwarded`, async ({ parser, type, send }) => {
      const up = await upstream();
      const app = factory();
      app.use((factory[parser as 'json'])({ verify: keepRawBody }));
      app.use('/api', proxy({ target: up.url }));

      const response = await request(app).post('/api/raw').set('content-type', type).send(send);

      expect(response.status).toBe(200);
      expect(up.requests[0]?.body.toString()).toBe(send);
      expect(up.requests[0]?.headers['content-length']).toBe(String(Buffer.byteLength(send)));
    });
  }

  it('express.json() without raw bytes: rebuilt by JSON.stringify (the README lists what cannot survive)', async () => {
    const up = await upstream();
    const app = expressGateway({ target: up.url }, (app) => app.use(express.json()));

    await request(app).post('/api/json').set('content-type', 'application/json').send('{"n":12345678901234567890,"k":1,"k":2}');

    expect(up.requests[0]?.body.toString()).toBe('{"n":12345678901234567000,"k":2}');
  });
});

// Stale on error (staleIfError): responses a shared cache may store are kept
// while they stream to the client, and a failure before the client got
// anything is answered with the last good one while its age allows, with
// Age and an RFC 9211 Cache-Status. Real upstreams whose behaviour a test
// switches from good to faulty; time is moved through the upstream's own
// `Age` header or a store that ages what it hands back, never by sleeping.

import { Agent, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import express from 'express';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  createProxy,
  MemoryStaleStore,
  type FailureEvent,
  type ProxyOptions,
  type ResilientProxy,
  type StaleEntry,
  type StaleEvent,
  type StaleStore,
} from '../src/index.js';
import { faults, refusedUrl, type FaultUpstream } from '../src/testing/index.js';
import { listen, proxy, upstream } from './support.js';

interface Reply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/** One request on a fresh connection: any method, headers and body. */
function call(url: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: options.method ?? 'GET', headers: options.headers ?? {}, agent: false }, (res) => {
      let body = '';
      res.setEncoding('latin1');
      res.on('data', (chunk: string) => (body += chunk));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.once('error', reject);
    });
    req.once('error', reject);
    req.end(options.body);
  });
}

function codeOf(reply: Reply): string {
  return (JSON.parse(reply.body) as { code: string }).code;
}

/** What the hooks saw. */
function observe(): { stale: StaleEvent[]; failures: FailureEvent[]; hooks: { onStale: (e: StaleEvent) => void; onFailure: (e: FailureEvent) => void } } {
  const stale: StaleEvent[] = [];
  const failures: FailureEvent[] = [];
  return { stale, failures, hooks: { onStale: (e) => stale.push(e), onFailure: (e) => failures.push(e) } };
}

const FRESH = { 'cache-control': 'max-age=60' };

/** An upstream that answers `body` with `headers` until told otherwise. */
async function goodUpstream(body = 'good', headers: Record<string, string> = FRESH): Promise<FaultUpstream> {
  return upstream({ fallback: faults.respond(200, body, headers) });
}

/** A proxy on bare node:http with stale on error on (defaults unless given) and no retries. */
async function gateway(options: ProxyOptions): Promise<{ url: string; proxy: ResilientProxy }> {
  const created = proxy({ name: 'orders', retry: false, staleIfError: true, ...options });
  const { url } = await listen(created);
  return { url, proxy: created };
}

/** A store that hands entries back older than they are, as if `offset` ms had passed since they were kept. */
class AgingStore implements StaleStore {
  readonly inner = new MemoryStaleStore();
  offset = 0;

  get(key: string): StaleEntry | undefined {
    const entry = this.inner.get(key);
    if (entry?.kind !== 'response') return entry;
    // `t` is when the response arrived, in http-cache-semantics' serialized policy.
    return { ...entry, policy: { ...entry.policy, t: (entry.policy.t as number) - this.offset } };
  }

  set(key: string, entry: StaleEntry): void {
    this.inner.set(key, entry);
  }

  delete(key: string): void {
    this.inner.delete(key);
  }
}

describe('answering a failure with the last good response', () => {
  it('a refused connection: the kept response, with Age and Cache-Status; onStale is told, onFailure is not', async () => {
    const up = await goodUpstream('v1', { 'cache-control': 'max-age=60', etag: '"v1"' });
    const seen = observe();
    const { url, proxy: p } = await gateway({ target: up.url, hooks: seen.hooks });

    const first = await call(`${url}/items/7?full=1`);
    expect([first.status, first.body, first.headers.age, first.headers['cache-status']]).toStrictEqual([200, 'v1', undefined, undefined]);

    p.setTargets(await refusedUrl());
    const second = await call(`${url}/items/7?full=1`, { headers: { 'x-request-id': 'r-2' } });

    expect(second.status).toBe(200);
    expect(second.body).toBe('v1');
    expect(second.headers).toMatchObject({
      'content-type': 'text/plain',
      'content-length': '2',
      'cache-control': 'max-age=60',
      etag: '"v1"',
      age: '0',
      'cache-status': 'resilient-proxy; fwd=stale; detail=UPSTREAM_CONNECT_REFUSED',
      'x-request-id': 'r-2',
    });
    expect(seen.failures).toStrictEqual([]);
    expect(seen.stale).toHaveLength(1);
    expect(seen.stale[0]).toMatchObject({
      code: 'UPSTREAM_CONNECT_REFUSED',
      proxyStatus: 'connection_refused',
      phase: 'connect',
      upstream: 'orders',
      requestId: 'r-2',
      method: 'GET',
      path: '/items/7?full=1',
      receivedStatus: null,
      attempts: 1,
      statusCode: 200,
      age: 0,
    });
    expect(seen.stale[0]?.error).toBeInstanceOf(Error);

    // Another URL has nothing kept: the contract, and onFailure.
    const other = await call(`${url}/items/8`);
    expect([other.status, codeOf(other), seen.failures.length]).toStrictEqual([502, 'UPSTREAM_CONNECT_REFUSED', 1]);
  });

  it('a 503 after retries: fwd-status says what the upstream answered, attempts counts them all', async () => {
    const up = await goodUpstream();
    const seen = observe();
    const { url } = await gateway({ target: up.url, retry: { minDelay: 1, maxDelay: 1 }, hooks: seen.hooks });
    await call(`${url}/a`);

    up.setFallback(faults.status(503));
    const reply = await call(`${url}/a`);

    expect([reply.status, reply.body, reply.headers.age, reply.headers['cache-status']]).toStrictEqual([
      200,
      'good',
      '0',
      'resilient-proxy; fwd=stale; fwd-status=503; detail=UPSTREAM_STATUS',
    ]);
    expect(up.requests).toHaveLength(4);
    expect(seen.stale[0]).toMatchObject({ code: 'UPSTREAM_STATUS', receivedStatus: 503, attempts: 3, phase: 'response' });
    expect(seen.failures).toStrictEqual([]);
  });

  it('a response timeout', async () => {
    const up = await goodUpstream();
    const seen = observe();
    const { url } = await gateway({ target: up.url, timeout: { response: 200 }, hooks: seen.hooks });
    await call(`${url}/a`);

    up.setFallback(faults.hang());
    const reply = await call(`${url}/a`);

    expect([reply.status, reply.body, reply.headers['cache-status']]).toStrictEqual([200, 'good', 'resilient-proxy; fwd=stale; detail=UPSTREAM_RESPONSE_TIMEOUT']);
    expect(seen.stale[0]).toMatchObject({ code: 'UPSTREAM_RESPONSE_TIMEOUT', proxyStatus: 'http_response_timeout', phase: 'response' });
  });

  it('an open circuit: the failure that opens it and the refusals after it, without calling the upstream', async () => {
    const up = await goodUpstream();
    const seen = observe();
    const { url } = await gateway({ target: up.url, breaker: { volumeThreshold: 2, errorThresholdPercentage: 40, resetTimeout: 30_000 }, hooks: seen.hooks });
    await call(`${url}/a`);

    up.setFallback(faults.status(503));
    const opening = await call(`${url}/a`);
    const refused = await call(`${url}/a`);

    expect([opening.status, opening.headers['cache-status']]).toStrictEqual([200, 'resilient-proxy; fwd=stale; fwd-status=503; detail=UPSTREAM_STATUS']);
    expect([refused.status, refused.body, refused.headers['cache-status'], refused.headers['retry-after']]).toStrictEqual([
      200,
      'good',
      'resilient-proxy; fwd=stale; detail=CIRCUIT_OPEN',
      undefined,
    ]);
    expect(up.requests).toHaveLength(2);
    expect(seen.stale[1]).toMatchObject({ code: 'CIRCUIT_OPEN', proxyStatus: 'destination_unavailable', phase: null, attempts: 0 });
    // Without a kept response the refusal is the contract.
    const other = await call(`${url}/b`);
    expect([other.status, codeOf(other)]).toStrictEqual([502, 'CIRCUIT_OPEN']);
  });

  it('an upstream at capacity (UPSTREAM_OVERLOADED)', async () => {
    const up = await goodUpstream();
    const { url } = await gateway({ target: up.url, breaker: { capacity: 1 } });
    await call(`${url}/a`);

    up.setFallback(faults.hang());
    const held = httpRequest(`${url}/b`, { agent: false });
    held.on('error', () => undefined);
    held.end();
    await up.waitForRequests(2);
    const reply = await call(`${url}/a`);
    held.destroy();

    expect([reply.status, reply.body, reply.headers['cache-status']]).toStrictEqual([200, 'good', 'resilient-proxy; fwd=stale; detail=UPSTREAM_OVERLOADED']);
    expect(up.requests).toHaveLength(2);
  });

  it('appends to a Cache-Status the response already had, and uses proxyName', async () => {
    const up = await goodUpstream('good', { 'cache-control': 'max-age=60', 'cache-status': 'cdn; hit' });
    const { url } = await gateway({ target: up.url, proxyName: 'edge-1' });
    await call(`${url}/a`);

    up.setFallback(faults.status(502));
    const reply = await call(`${url}/a`);

    expect(reply.headers['cache-status']).toBe('cdn; hit, edge-1; fwd=stale; fwd-status=502; detail=UPSTREAM_STATUS');
  });

  it('is off by default: the contract', async () => {
    const up = await goodUpstream();
    const { url } = await listen(proxy({ target: up.url, retry: false }));
    await call(`${url}/a`);

    up.setFallback(faults.status(503));
    const reply = await call(`${url}/a`);

    expect([reply.status, codeOf(reply)]).toStrictEqual([502, 'UPSTREAM_STATUS']);
  });

  it('passes the app’s own headers again and joins its Vary (Express)', async () => {
    const up = await goodUpstream('good', { 'cache-control': 'max-age=60', vary: 'Accept-Language' });
    const app = express();
    app.use((_req, res, next) => {
      res.setHeader('vary', 'Origin');
      res.setHeader('x-app', 'yes');
      next();
    });
    app.use('/api', proxy({ target: up.url, retry: false, staleIfError: true }));
    const { url } = await listen(app);
    await call(`${url}/api/a`);

    up.setFallback(faults.status(503));
    const reply = await call(`${url}/api/a`);

    expect([reply.status, reply.headers.vary, reply.headers['x-app']]).toStrictEqual([200, 'Origin, Accept-Language', 'yes']);
  });
});

describe('what is kept: RFC 9111 shared-cache rules, through http-cache-semantics', () => {
  /** Keeps a response to a request with `requestHeaders`, then fails; the reply to the failure. */
  async function keepThenFail(responseHeaders: Record<string, string>, requestHeaders: Record<string, string> = {}) {
    const up = await goodUpstream('good', responseHeaders);
    const store = new MemoryStaleStore();
    const { url } = await gateway({ target: up.url, staleIfError: { store } });
    const first = await call(`${url}/a`, { headers: requestHeaders });
    up.setFallback(faults.status(503));
    const reply = await call(`${url}/a`, { headers: requestHeaders });
    return { first, reply, store };
  }

  it.each([
    { name: 'no-store', response: { 'cache-control': 'no-store' } },
    { name: 'private', response: { 'cache-control': 'private, max-age=60' } },
    { name: 'Set-Cookie, even public', response: { 'cache-control': 'public, max-age=60', 'set-cookie': 'session=abc' } },
    { name: 'Authorization without public', response: { 'cache-control': 'max-age=60' }, request: { authorization: 'Bearer t0k3n' } },
    { name: 'must-revalidate past freshness', response: { 'cache-control': 'max-age=0, must-revalidate' } },
    { name: 'no-cache', response: { 'cache-control': 'no-cache' } },
    { name: 'proxy-revalidate', response: { 'cache-control': 'max-age=60, proxy-revalidate' } },
    { name: 's-maxage past freshness', response: { 'cache-control': 's-maxage=0' } },
    { name: 'Vary: *', response: { 'cache-control': 'max-age=60', vary: '*' } },
    { name: 'a client that said no-store', response: { 'cache-control': 'max-age=60' }, request: { 'cache-control': 'no-store' } },
    { name: 'no Cache-Control or Expires (only heuristically storable)', response: {} },
    { name: 'a request with a cookie, without public', response: { 'cache-control': 'max-age=60' }, request: { cookie: 'session=alice' } },
  ])('$name: not kept; the failure gets the contract', async ({ response, request }) => {
    const { first, reply, store } = await keepThenFail(response, request);

    expect([first.status, first.body]).toStrictEqual([200, 'good']);
    expect(store.size).toBe(0);
    expect([reply.status, codeOf(reply)]).toStrictEqual([502, 'UPSTREAM_STATUS']);
  });

  it.each([
    { name: 'Authorization with public', response: { 'cache-control': 'public, max-age=60' }, request: { authorization: 'Bearer t0k3n' } },
    { name: 'Authorization with s-maxage', response: { 'cache-control': 's-maxage=60' }, request: { authorization: 'Bearer t0k3n' } },
    { name: 'must-revalidate while fresh', response: { 'cache-control': 'max-age=60, must-revalidate' } },
    { name: 'a request with a cookie and a public response', response: { 'cache-control': 'public, max-age=60' }, request: { cookie: 'session=alice' } },
    { name: 'Expires only', response: { expires: new Date(Date.now() + 60_000).toUTCString() } },
  ])('$name: kept and served', async ({ response, request }) => {
    const { reply, store } = await keepThenFail(response, request);

    expect(store.size).toBe(1);
    expect([reply.status, reply.body, reply.headers['cache-status']]).toStrictEqual([200, 'good', 'resilient-proxy; fwd=stale; fwd-status=503; detail=UPSTREAM_STATUS']);
  });

  // RFC 9111 §5.2: directive names are case-insensitive, and several
  // Cache-Control fields are one list. Each spelling is kept from other users.
  it.each([
    { name: 'Private', cacheControl: ['Private, max-age=60'] },
    { name: 'PRIVATE', cacheControl: ['PRIVATE, max-age=60'] },
    { name: 'PrIvAtE after public', cacheControl: ['public, max-age=60, PrIvAtE'] },
    { name: 'Private="Set-Cookie"', cacheControl: ['max-age=60, Private="Set-Cookie"'] },
    { name: 'No-Store', cacheControl: ['No-Store, max-age=60'] },
    { name: 'NO-STORE with public', cacheControl: ['NO-STORE, public'] },
    { name: 'No-Cache', cacheControl: ['max-age=60, No-Cache'] },
    { name: 'Private in a second Cache-Control field', cacheControl: ['public, max-age=60', 'Private'] },
    { name: 'no-store in a second Cache-Control field', cacheControl: ['max-age=60', 'no-store'] },
    { name: 'a client that said No-Store', cacheControl: ['public, max-age=60'], request: { 'cache-control': 'No-Store' } },
  ])('$name: not kept, whatever the case or the number of fields; the failure gets the contract', async ({ cacheControl, request }) => {
    const up = await upstream({
      fallback: ({ res }) => {
        res.setHeader('content-type', 'text/plain');
        res.setHeader('cache-control', cacheControl);
        res.end('for alice only');
      },
    });
    const store = new MemoryStaleStore();
    const { url } = await gateway({ target: up.url, staleIfError: { store } });
    const first = await call(`${url}/a`, { headers: request ?? {} });
    up.setFallback(faults.status(503));
    const reply = await call(`${url}/a`);

    expect([first.status, first.body, store.size]).toStrictEqual([200, 'for alice only', 0]);
    expect([reply.status, codeOf(reply)]).toStrictEqual([502, 'UPSTREAM_STATUS']);
  });

  it('a 5xx passed on (500) is not kept and leaves the kept response in place; a newer good one replaces it', async () => {
    const up = await goodUpstream('v1');
    const store = new MemoryStaleStore();
    const { url } = await gateway({ target: up.url, staleIfError: { store } });
    await call(`${url}/a`);

    up.setFallback(faults.respond(500, 'boom', FRESH));
    expect((await call(`${url}/a`)).status).toBe(500);
    up.setFallback(faults.status(503));
    const afterError = await call(`${url}/a`);
    up.setFallback(faults.respond(200, 'v2', FRESH));
    await call(`${url}/a`);
    up.setFallback(faults.status(503));
    const afterNewer = await call(`${url}/a`);

    expect([afterError.status, afterError.body, afterNewer.body, store.size]).toStrictEqual([200, 'v1', 'v2', 1]);
  });

  it.each([{ 'cache-control': 'no-cache' }, { pragma: 'no-cache' }])('a client that asks for no stored response (%o) gets the contract', async (headers) => {
    const up = await goodUpstream();
    const { url } = await gateway({ target: up.url });
    await call(`${url}/a`);

    up.setFallback(faults.status(503));
    const reply = await call(`${url}/a`, { headers });

    expect([reply.status, codeOf(reply)]).toStrictEqual([502, 'UPSTREAM_STATUS']);
  });

  it('Vary: each variant is kept under its own key; a request for another variant gets no stale answer', async () => {
    const up = await upstream({
      fallback: ({ req, res }) => {
        const body = `lang=${String(req.headers['accept-language'])}`;
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length, 'cache-control': 'max-age=60', vary: 'Accept-Language' });
        res.end(body);
      },
    });
    const store = new MemoryStaleStore();
    const { url } = await gateway({ target: up.url, staleIfError: { store } });
    await call(`${url}/a`, { headers: { 'accept-language': 'en' } });
    await call(`${url}/a`, { headers: { 'accept-language': 'fr' } });

    up.setFallback(faults.status(503));
    const en = await call(`${url}/a`, { headers: { 'accept-language': 'en' } });
    const fr = await call(`${url}/a`, { headers: { 'accept-language': 'fr' } });
    const de = await call(`${url}/a`, { headers: { 'accept-language': 'de' } });
    const none = await call(`${url}/a`);

    expect([en.status, en.body, en.headers.vary]).toStrictEqual([200, 'lang=en', 'Accept-Language']);
    expect([fr.status, fr.body]).toStrictEqual([200, 'lang=fr']);
    expect([de.status, codeOf(de)]).toStrictEqual([502, 'UPSTREAM_STATUS']);
    expect([none.status, codeOf(none)]).toStrictEqual([502, 'UPSTREAM_STATUS']);
    // The URL's key names the headers; one key per variant.
    expect(store.size).toBe(3);
  });

  it('a body over maxEntryBytes streams to the client whole and is not kept, with or without Content-Length', async () => {
    const up = await upstream({
      fallback: ({ req, res }) => {
        const size = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('size'));
        if (req.url?.startsWith('/chunked')) {
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'cache-control': 'max-age=60' });
          res.write('x'.repeat(size / 2));
          res.end('y'.repeat(size / 2));
          return;
        }
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size, 'cache-control': 'max-age=60' });
        res.end('z'.repeat(size));
      },
    });
    const store = new MemoryStaleStore();
    const { url } = await gateway({ target: up.url, staleIfError: { maxEntryBytes: 1024, store } });

    const over = await call(`${url}/length?size=2048`);
    const overChunked = await call(`${url}/chunked?size=2048`);
    const atLimit = await call(`${url}/chunked?size=1024`);
    expect([over.body.length, overChunked.body, atLimit.body.length]).toStrictEqual([2048, 'x'.repeat(1024) + 'y'.repeat(1024), 1024]);
    expect(store.size).toBe(1);

    up.setFallback(faults.status(503));
    const failedOver = await call(`${url}/length?size=2048`);
    const failedChunked = await call(`${url}/chunked?size=2048`);
    const failedAtLimit = await call(`${url}/chunked?size=1024`);
    expect([failedOver.status, failedChunked.status]).toStrictEqual([502, 502]);
    // Kept without a Content-Length of its own: the stale answer gets one.
    expect([failedAtLimit.status, failedAtLimit.body, failedAtLimit.headers['content-length']]).toStrictEqual([200, 'x'.repeat(512) + 'y'.repeat(512), '1024']);
  });
});

describe('how old a kept response may be', () => {
  /** The upstream says its response is already `age` seconds old and stale (max-age=0). */
  async function agedResponse(staleIfError: NonNullable<ProxyOptions['staleIfError']>, cacheControl = 'max-age=0', age = '100') {
    const up = await goodUpstream('good', { 'cache-control': cacheControl, age });
    const { url } = await gateway({ target: up.url, staleIfError });
    await call(`${url}/a`);
    up.setFallback(faults.status(503));
    return (headers: Record<string, string> = {}) => call(`${url}/a`, { headers });
  }

  it('within maxStale: served with its Age; past it: the contract', async () => {
    const within = await (await agedResponse({ maxStale: 200_000 }))();
    const past = await (await agedResponse({ maxStale: 60_000 }))();

    expect([within.status, within.headers.age]).toStrictEqual([200, '100']);
    expect([past.status, codeOf(past)]).toStrictEqual([502, 'UPSTREAM_STATUS']);
  });

  it('the origin’s stale-if-error allows more than maxStale', async () => {
    const allowed = await (await agedResponse({ maxStale: 0 }, 'max-age=0, stale-if-error=200'))();
    const notEnough = await (await agedResponse({ maxStale: 0 }, 'max-age=0, stale-if-error=50'))();

    expect([allowed.status, allowed.headers.age]).toStrictEqual([200, '100']);
    expect([notEnough.status, codeOf(notEnough)]).toStrictEqual([502, 'UPSTREAM_STATUS']);
  });

  describe("the origin's stale-if-error=N is the window (RFC 5861), on a fake clock", () => {
    afterEach(() => {
      vi.useRealTimers();
    });

    /** Keeps `/a` (`max-age=0` and `cacheControl`) at a fake time, then fails it `seconds` later. */
    async function after(seconds: number, cacheControl: string, staleIfError: NonNullable<ProxyOptions['staleIfError']> = true, headers: Record<string, string> = {}): Promise<Reply> {
      // Only Date: http-cache-semantics reads the clock through Date.now(); sockets and timers stay real.
      vi.useFakeTimers({ toFake: ['Date'], now: new Date('2026-01-01T00:00:00Z') });
      const up = await goodUpstream('good', { 'cache-control': `max-age=0, ${cacheControl}` });
      const { url } = await gateway({ target: up.url, staleIfError });
      await call(`${url}/a`);
      up.setFallback(faults.status(503));
      vi.setSystemTime(Date.now() + seconds * 1000);
      return call(`${url}/a`, { headers });
    }

    it('stale-if-error=60 under the default maxStale (5 min): served at 57 s, the contract at 63 s', async () => {
      const within = await after(57, 'stale-if-error=60');
      const past = await after(63, 'stale-if-error=60');

      expect([within.status, within.body, within.headers.age]).toStrictEqual([200, 'good', '57']);
      expect([past.status, codeOf(past)]).toStrictEqual([502, 'UPSTREAM_STATUS']);
    });

    it("a client's max-stale cannot pass it; maxStaleOverridesOrigin: true lets maxStale apply past it", async () => {
      const client = await after(63, 'stale-if-error=60', true, { 'cache-control': 'max-stale=3600' });
      const overridden = await after(63, 'stale-if-error=60', { maxStaleOverridesOrigin: true });
      const overriddenPastMaxStale = await after(301, 'stale-if-error=60', { maxStaleOverridesOrigin: true });

      expect([client.status, codeOf(client)]).toStrictEqual([502, 'UPSTREAM_STATUS']);
      expect([overridden.status, overridden.headers.age]).toStrictEqual([200, '63']);
      expect([overriddenPastMaxStale.status, codeOf(overriddenPastMaxStale)]).toStrictEqual([502, 'UPSTREAM_STATUS']);
    });

    it('stale-if-error longer than maxStale still allows its whole window; without one maxStale applies', async () => {
      const longer = await after(400, 'stale-if-error=600');
      const none = await after(299, 'public');
      const noneTooLate = await after(301, 'public');

      expect([longer.status, longer.headers.age]).toStrictEqual([200, '400']);
      expect([none.status, none.headers.age]).toStrictEqual([200, '299']);
      expect([noneTooLate.status, codeOf(noneTooLate)]).toStrictEqual([502, 'UPSTREAM_STATUS']);
    });
  });

  it('the client’s max-stale allows more than maxStale', async () => {
    const fail = await agedResponse({ maxStale: 0 });

    const enough = await fail({ 'cache-control': 'max-stale=200' });
    const any = await fail({ 'cache-control': 'max-stale' });
    const notEnough = await fail({ 'cache-control': 'max-stale=50' });
    const none = await fail();

    expect([enough.status, any.status, notEnough.status, none.status]).toStrictEqual([200, 200, 502, 502]);
  });

  it('must-revalidate is never served past freshness, whatever maxStale, stale-if-error or max-stale say', async () => {
    // Fresh when kept (max-age=1000 > Age 100), then 1000 s pass.
    const store = new AgingStore();
    const up = await goodUpstream('good', { 'cache-control': 'max-age=1000, must-revalidate, stale-if-error=86400', age: '100' });
    const { url } = await gateway({ target: up.url, staleIfError: { maxStale: 2_000_000, store } });
    await call(`${url}/a`);
    up.setFallback(faults.status(503));

    const fresh = await call(`${url}/a`);
    store.offset = 1_000_000;
    const stale = await call(`${url}/a`, { headers: { 'cache-control': 'max-stale' } });

    expect([fresh.status, fresh.headers.age]).toStrictEqual([200, '100']);
    expect([stale.status, codeOf(stale)]).toStrictEqual([502, 'UPSTREAM_STATUS']);
    // It can never be served again: the store let it go.
    expect(store.inner.size).toBe(0);
  });

  it('expires as time passes (a store that hands entries back older)', async () => {
    const store = new AgingStore();
    const up = await goodUpstream('good', { 'cache-control': 'max-age=0' });
    const { url } = await gateway({ target: up.url, staleIfError: { maxStale: 2_000, store } });
    await call(`${url}/a`);
    up.setFallback(faults.status(503));

    const now = await call(`${url}/a`);
    store.offset = 1_500;
    const later = await call(`${url}/a`);
    store.offset = 2_500;
    const tooLate = await call(`${url}/a`);

    expect([now.status, now.headers.age]).toStrictEqual([200, '0']);
    expect([later.status, later.headers.age]).toStrictEqual([200, '1']);
    expect([tooLate.status, codeOf(tooLate)]).toStrictEqual([502, 'UPSTREAM_STATUS']);
  });
});

describe('methods', () => {
  it('HEAD gets the kept GET response’s headers and no body', async () => {
    const up = await goodUpstream('four');
    const { url } = await gateway({ target: up.url });
    await call(`${url}/a`);

    up.setFallback(faults.status(503));
    const reply = await call(`${url}/a`, { method: 'HEAD' });

    expect([reply.status, reply.body, reply.headers['content-length'], reply.headers['cache-status']]).toStrictEqual([
      200,
      '',
      '4',
      'resilient-proxy; fwd=stale; fwd-status=503; detail=UPSTREAM_STATUS',
    ]);
  });

  it('a kept HEAD response answers a HEAD, never a GET', async () => {
    const up = await goodUpstream('four');
    const { url } = await gateway({ target: up.url });
    const first = await call(`${url}/a`, { method: 'HEAD' });
    expect([first.status, first.headers['content-length']]).toStrictEqual([200, '4']);

    up.setFallback(faults.status(503));
    const head = await call(`${url}/a`, { method: 'HEAD' });
    const get = await call(`${url}/a`);

    expect([head.status, head.body, head.headers['content-length'], head.headers.age]).toStrictEqual([200, '', '4', '0']);
    expect([get.status, codeOf(get)]).toStrictEqual([502, 'UPSTREAM_STATUS']);
  });

  it('other methods are never answered with a kept response', async () => {
    const up = await goodUpstream();
    const { url } = await gateway({ target: up.url });
    await call(`${url}/a`);

    up.setFallback(faults.status(503));
    const post = await call(`${url}/a`, { method: 'POST', body: 'x' });
    const del = await call(`${url}/a`, { method: 'DELETE' });

    expect([post.status, codeOf(post), del.status, codeOf(del)]).toStrictEqual([502, 'UPSTREAM_STATUS', 502, 'UPSTREAM_STATUS']);
  });
});

describe('what is not hidden', () => {
  it('a request body over limits.requestBodyBytes (REQUEST_TOO_LARGE)', async () => {
    const up = await goodUpstream();
    const { url } = await gateway({ target: up.url, limits: { requestBodyBytes: 10 } });
    await call(`${url}/a`);

    const reply = await call(`${url}/a`, { headers: { 'content-length': '20' }, body: 'x'.repeat(20) });

    expect([reply.status, codeOf(reply)]).toStrictEqual([413, 'REQUEST_TOO_LARGE']);
  });

  it('the proxy’s own fault (PROXY_INTERNAL_ERROR)', async () => {
    const up = await goodUpstream();
    let broken = false;
    const seen = observe();
    const { url } = await gateway({
      target: up.url,
      hooks: seen.hooks,
      headers: {
        response: (headers) => {
          if (broken) throw new Error('bug');
          return headers;
        },
      },
    });
    await call(`${url}/a`);

    broken = true;
    const reply = await call(`${url}/a`);

    expect([reply.status, codeOf(reply)]).toStrictEqual([502, 'PROXY_INTERNAL_ERROR']);
    expect(seen.stale).toStrictEqual([]);
    expect(seen.failures.map((f) => f.code)).toStrictEqual(['PROXY_INTERNAL_ERROR']);
  });
});

describe('streaming while keeping', () => {
  it('the client gets each chunk as the upstream sends it: the copy never holds the stream back', async () => {
    let sendRest!: () => void;
    const restAllowed = new Promise<void>((resolve) => (sendRest = resolve));
    const up = await upstream({
      fallback: ({ res }) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' });
        res.write('first part;');
        void restAllowed.then(() => res.end('second part'));
      },
    });
    const { url } = await gateway({ target: up.url });

    const body = await new Promise<string>((resolve, reject) => {
      const req = httpRequest(`${url}/a`, { agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          // The second part is sent only once the first reached the client.
          if (text === '') sendRest();
          text += chunk;
        });
        res.once('end', () => resolve(text));
      });
      req.once('error', reject);
      req.end();
    });
    expect(body).toBe('first part;second part');

    up.setFallback(faults.status(503));
    const stale = await call(`${url}/a`);
    expect([stale.status, stale.body]).toStrictEqual([200, 'first part;second part']);
  });

  it("the origin's response is kept, and transformResponse runs again for the request served: one user's output never reaches another", async () => {
    const up = await upstream({
      fallback: ({ res }) => {
        const body = '{"salary":100,"name":"ann"}';
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'public, max-age=60', etag: '"e"' });
        res.end(body);
      },
    });
    const store = new MemoryStaleStore();
    // An admin sees the salary; everyone else gets it redacted, and their own name.
    const transform = (body: Buffer, { req }: { req: IncomingMessage }): string => {
      const user = String(req.headers['x-user']);
      const record = JSON.parse(body.toString()) as Record<string, unknown>;
      return JSON.stringify(user === 'admin' ? { ...record, viewer: user } : { name: record.name, viewer: user });
    };
    const { url } = await gateway({ target: up.url, staleIfError: { store }, transformResponse: { match: (_status, headers) => headers['content-type'] === 'application/json', transform, maxBytes: 32 } });
    const admin = await call(`${url}/record`, { headers: { 'x-user': 'admin' } });
    expect([admin.body, admin.headers.etag]).toStrictEqual(['{"salary":100,"name":"ann","viewer":"admin"}', undefined]);

    up.setFallback(faults.status(503));
    const bob = await call(`${url}/record`, { headers: { 'x-user': 'bob' } });

    expect([bob.status, bob.body, bob.headers['content-length'], bob.headers.etag]).toStrictEqual([200, '{"name":"ann","viewer":"bob"}', '29', undefined]);
    const kept = store.get(`GET\norders\n${new URL(url).host}\n\n/record`);
    expect(kept?.kind === 'response' ? [kept.body.toString(), kept.headers.etag] : kept).toStrictEqual(['{"salary":100,"name":"ann"}', '"e"']);

    // Past transformResponse.maxBytes the response passes as it came, live and stale.
    up.setFallback(faults.respond(200, 'b'.repeat(64), { 'content-type': 'application/json', 'cache-control': 'public, max-age=60' }));
    const big = await call(`${url}/big`, { headers: { 'x-user': 'admin' } });
    up.setFallback(faults.status(503));
    const staleBig = await call(`${url}/big`, { headers: { 'x-user': 'bob' } });
    expect([big.body, staleBig.status, staleBig.body]).toStrictEqual(['b'.repeat(64), 200, 'b'.repeat(64)]);
  });

  it("headers.response runs for the request served: Alice's header is never replayed to Bob", async () => {
    const up = await goodUpstream('page', { 'cache-control': 'public, max-age=60' });
    const { url } = await gateway({
      target: up.url,
      headers: { response: (headers, { req }) => ({ ...headers, 'x-signed-in-as': String(req.headers['x-user']) }) },
    });
    const alice = await call(`${url}/home`, { headers: { 'x-user': 'alice' } });
    up.setFallback(faults.status(503));
    const bob = await call(`${url}/home`, { headers: { 'x-user': 'bob' } });

    expect([alice.status, alice.headers['x-signed-in-as']]).toStrictEqual([200, 'alice']);
    expect([bob.status, bob.body, bob.headers['x-signed-in-as'], bob.headers['cache-status']]).toStrictEqual([200, 'page', 'bob', 'resilient-proxy; fwd=stale; fwd-status=503; detail=UPSTREAM_STATUS']);
  });

  it('a 512 KiB body passes byte for byte and is served stale byte for byte', async () => {
    const payload = Buffer.alloc(512 * 1024);
    for (let i = 0; i < payload.length; i += 1) payload[i] = (i * 7) % 251;
    const up = await upstream({ fallback: faults.respond(200, payload, { 'cache-control': 'max-age=60', 'content-type': 'application/octet-stream' }) });
    const { url } = await gateway({ target: up.url });

    const first = await call(`${url}/blob`);
    up.setFallback(faults.status(503));
    const stale = await call(`${url}/blob`);

    expect(Buffer.from(first.body, 'latin1').equals(payload)).toBe(true);
    expect(stale.status).toBe(200);
    expect(Buffer.from(stale.body, 'latin1').equals(payload)).toBe(true);
  });
});

describe('stores', () => {
  it('memory stays bounded under 10,000 distinct URLs: the default store never counts more than maxBytes', async () => {
    // A plain upstream: the fault upstream's request records would cost more than the proxy.
    let failing = false;
    const up = await listen((_req: IncomingMessage, res: ServerResponse) => {
      if (failing) res.writeHead(503, { 'content-length': 0 }).end();
      else res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 100, 'cache-control': 'max-age=60' }).end('b'.repeat(100));
    });
    const store = new MemoryStaleStore({ maxBytes: 256 * 1024 });
    const { url } = await gateway({ target: up.url, staleIfError: { store } });
    const agent = new Agent({ keepAlive: true, maxSockets: 32 });
    let highest = 0;
    let next = 0;
    const get = (path: string) =>
      new Promise<void>((resolve, reject) => {
        const req = httpRequest(`${url}${path}`, { agent }, (res) => {
          res.resume();
          res.once('end', () => {
            highest = Math.max(highest, store.bytes);
            resolve();
          });
        });
        req.once('error', reject);
        req.end();
      });
    // 32 clients, each taking the next URL until all 10,000 were asked for.
    const client = async (): Promise<void> => {
      while (next < 10_000) await get(`/item/${String(next++)}`);
    };
    try {
      await Promise.all(Array.from({ length: 32 }, client));
    } finally {
      agent.destroy();
    }

    expect(highest).toBeLessThanOrEqual(store.maxBytes);
    expect(store.bytes).toBeLessThanOrEqual(store.maxBytes);
    expect(store.size).toBeGreaterThan(50);
    expect(store.size).toBeLessThan(10_000);

    failing = true;
    const newest = await call(`${url}/item/9999`);
    const oldest = await call(`${url}/item/0`);
    expect([newest.status, oldest.status]).toStrictEqual([200, 502]);
  }, 60_000); // 10,000 requests: 3 s alone, up to 19 s on a loaded machine

  // bench/stale-memory.ts measured what a kept entry holds: at most about 160
  // bytes a header field besides its characters (every name new), and 1,300
  // bytes an entry besides its body and headers. The store's count must not
  // be below that, or maxBytes bounds nothing (373 MiB were held under a
  // 32 MiB maxBytes with 1,400 fields a response).
  it.each([1, 100, 1400])('%i header fields: the store counts at least the memory the entry holds (the heap per field measured with every name new)', async (fields) => {
    const up = await listen((_req: IncomingMessage, res: ServerResponse) => {
      // 1,400 fields within undici's 16 KiB response head.
      const headers = ['content-type', 'text/plain', 'cache-control', 'max-age=60'];
      for (let i = 0; i < fields; i += 1) headers.push(`h${String(i)}`, 'v');
      res.writeHead(200, headers);
      res.end('b'.repeat(100));
    });
    const store = new MemoryStaleStore();
    const { url } = await gateway({ target: up.url, staleIfError: { store } });

    const reply = await call(`${url}/${'p'.repeat(1000)}`);

    expect([reply.status, store.size]).toStrictEqual([200, 1]);
    const characters = Object.entries(reply.headers).reduce((sum, [name, value]) => sum + name.length + String(value).length, 0);
    // The 1,000-character path is held once, in the key and the policy.
    expect(store.bytes).toBeGreaterThanOrEqual((fields + 2) * 160 + characters + 100 + 1300 + 1000);
  });

  it('MemoryStaleStore: least recently used first, entries over maxBytes refused, exact accounting', () => {
    const store = new MemoryStaleStore({ maxBytes: 300 });
    const entry = (size: number): StaleEntry => ({ kind: 'variants', vary: [], size });
    store.set('a', entry(34)); // 100 with its key (2 bytes a character) and its slot (64)
    store.set('b', entry(34));
    store.set('c', entry(34));
    expect([store.size, store.bytes]).toStrictEqual([3, 300]);

    store.get('a'); // a is now the most recently used
    store.set('d', entry(34));
    expect([store.get('b'), store.size, store.bytes]).toStrictEqual([undefined, 3, 300]);

    store.set('e', entry(235)); // 301 with its key: never kept
    expect([store.get('e'), store.size]).toStrictEqual([undefined, 3]);

    store.set('a', entry(9)); // replaced: its old size is given back
    store.delete('c');
    expect([store.size, store.bytes]).toStrictEqual([2, 175]);
    expect(() => new MemoryStaleStore({ maxBytes: 0 })).toThrow('Expected `maxBytes` to be a whole number of bytes (1 or more), got 0.');
  });

  it('another store plugs in, async; keys hold no header value and entries no credential', async () => {
    const map = new Map<string, StaleEntry>();
    const calls: string[] = [];
    const store: StaleStore = {
      get: (key) => {
        calls.push('get');
        return Promise.resolve(map.get(key));
      },
      set: (key, entry) => {
        calls.push('set');
        map.set(key, structuredClone(entry));
        return Promise.resolve();
      },
      delete: (key) => {
        calls.push('delete');
        map.delete(key);
        return Promise.resolve();
      },
    };
    const up = await goodUpstream('good', { 'cache-control': 'public, max-age=60', vary: 'Accept-Language' });
    const { url } = await gateway({ target: up.url, staleIfError: { store } });
    const headers = { 'accept-language': 'tlh-secret', authorization: 'Bearer s3cr3t' };
    await call(`${url}/a`, { headers });

    up.setFallback(faults.status(503));
    const reply = await call(`${url}/a`, { headers });

    expect([reply.status, reply.body, reply.headers['cache-status']]).toStrictEqual([200, 'good', 'resilient-proxy; fwd=stale; fwd-status=503; detail=UPSTREAM_STATUS']);
    expect(calls).toStrictEqual(['set', 'set', 'get', 'get']);
    expect([...map.keys()].join(' ')).not.toMatch(/tlh-secret|s3cr3t/);
    expect(JSON.stringify([...map.values()])).not.toMatch(/tlh-secret|s3cr3t/);
  });

  it.each([
    { name: 'throws', get: (): never => { throw new Error('down'); } },
    { name: 'rejects', get: () => Promise.reject(new Error('down')) },
    { name: 'never answers', get: () => new Promise<undefined>(() => undefined) },
  ])('a store whose get $name: the contract, never a hang', async ({ get }) => {
    const up = await goodUpstream();
    const seen = observe();
    const { url } = await gateway({ target: up.url, hooks: seen.hooks, staleIfError: { store: { get, set: () => undefined, delete: () => undefined } } });
    await call(`${url}/a`);

    up.setFallback(faults.status(503));
    const reply = await call(`${url}/a`);

    expect([reply.status, codeOf(reply)]).toStrictEqual([502, 'UPSTREAM_STATUS']);
    expect(seen.failures).toHaveLength(1);
  });

  it('an entry a store hands back malformed is a miss, and is deleted', async () => {
    const deleted: string[] = [];
    const malformed = { kind: 'response', status: 200, headers: null } as unknown as StaleEntry;
    const up = await goodUpstream();
    const { url } = await gateway({ target: up.url, staleIfError: { store: { get: () => malformed, set: () => undefined, delete: (key) => deleted.push(key) } } });

    up.setFallback(faults.status(503));
    const reply = await call(`${url}/a`);

    expect([reply.status, codeOf(reply), deleted.length]).toStrictEqual([502, 'UPSTREAM_STATUS', 1]);
  });

  it('a store whose set throws or rejects does not touch the response', async () => {
    const up = await goodUpstream();
    for (const set of [(): never => { throw new Error('full'); }, () => Promise.reject(new Error('full'))]) {
      const { url } = await gateway({ target: up.url, staleIfError: { store: { get: () => undefined, set, delete: () => undefined } } });
      const reply = await call(`${url}/a`);
      expect([reply.status, reply.body]).toStrictEqual([200, 'good']);
    }
  });
});

describe('options', () => {
  it.each([
    { value: { staleIfError: 'yes' }, message: 'Expected `staleIfError` to be true, false or an object like { maxStale, maxStaleOverridesOrigin, maxEntryBytes, maxBytes, store }, got the string "yes".' },
    { value: { staleIfError: { maxStaleOverridesOrigin: 'yes' } }, message: 'Expected `staleIfError.maxStaleOverridesOrigin` to be a boolean, got the string "yes".' },
    { value: { staleIfError: { maxStale: -1 } }, message: 'Expected `staleIfError.maxStale` to be a number of milliseconds from 0 to 2147483647, got -1.' },
    { value: { staleIfError: { maxEntryBytes: 1.5 } }, message: 'Expected `staleIfError.maxEntryBytes` to be a whole number of bytes (1 or more), got 1.5.' },
    { value: { staleIfError: { maxBytes: 0 } }, message: 'Expected `staleIfError.maxBytes` to be a whole number of bytes (1 or more), got 0.' },
    { value: { staleIfError: { maxBytes: 10, maxEntryBytes: 11 } }, message: 'Expected `staleIfError.maxEntryBytes` to be at most `staleIfError.maxBytes` (10), got 11.' },
    { value: { staleIfError: { store: { get: () => undefined } } }, message: 'Expected `staleIfError.store` to be a store with get, set and delete methods, got an object.' },
    { value: { staleIfError: { maxAge: 1 } }, message: 'Unknown option `staleIfError.maxAge`. Known options: maxStale, maxStaleOverridesOrigin, maxEntryBytes, maxBytes, store.' },
    { value: { hooks: { onStale: 'log' } }, message: 'Expected `hooks.onStale` to be a function, got the string "log".' },
  ])('$message', ({ value, message }) => {
    expect(() => createProxy({ target: 'http://127.0.0.1:1', ...(value as Partial<ProxyOptions>) })).toThrow(new TypeError(message));
  });

  it('a small maxBytes caps the default maxEntryBytes; both are accepted with a store of your own', async () => {
    const up = await goodUpstream('x'.repeat(600));
    const { url } = await gateway({ target: up.url, staleIfError: { maxBytes: 512 } });
    await call(`${url}/a`);
    up.setFallback(faults.status(503));
    // 600 bytes over a maxEntryBytes capped at 512: not kept.
    expect((await call(`${url}/a`)).status).toBe(502);

    expect(() => proxy({ target: 'http://127.0.0.1:1', staleIfError: { maxBytes: 10, store: new MemoryStaleStore() } })).not.toThrow();
  });
});

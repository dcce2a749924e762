// Ecosystem integration (issue 10), Koa 3: koaProxy mounted with koa-mount at
// /api behind koa-logger, @koa/cors, koa-compress and @koa/bodyparser, and a
// middleware that awaits next() to read the status. Real servers on loopback;
// every wait is event-driven.

import type { IncomingMessage, ServerResponse } from 'node:http';
import bodyParser from '@koa/bodyparser';
import cors from '@koa/cors';
import Koa from 'koa';
import Koa2 from 'koa2';
import compress from 'koa-compress';
import logger from 'koa-logger';
import mount from 'koa-mount';
import type { ProxyOptions } from 'resilient-proxy';
import { koaProxy } from 'resilient-proxy/koa';
import { describe, expect, it } from 'vitest';
import { listen, onCleanup, testRegistry } from '../support.js';
import {
  FIRST_EVENT,
  KiB,
  MiB,
  Recorder,
  SECOND_EVENT,
  abortMidResponse,
  abortMidUpload,
  eventStream,
  expectIntact,
  expectStillServing,
  json,
  pattern,
  patternSha256,
  remoteAddressOf,
  send,
  sha256,
  startUpstream,
  stripAnsi,
  upstreamCutsMidResponse,
  watchProcess,
  type IntactRecord,
} from './harness.js';

watchProcess();

const APP_ORIGIN = 'http://app.example';

interface LoggerLine {
  readonly line: string;
  readonly arrow: string;
  readonly method: string;
  readonly url: string;
  readonly status: number | null;
}

interface SeenStatus {
  readonly url: string;
  readonly status: number;
  /** The upstream's `x-upstream` header as the middleware saw it on ctx. */
  readonly upstreamHeader: string;
}

interface KoaStack {
  readonly url: string;
  readonly logs: Recorder<LoggerLine>;
  readonly intact: Recorder<IntactRecord>;
  /** What a middleware before the proxy saw after `await next()`. */
  readonly seen: Recorder<SeenStatus>;
  /** Koa's 'error' events. */
  readonly errors: Recorder<{ readonly code: unknown; readonly headerSent: unknown }>;
}

const KOA_VERSIONS = [
  { name: 'Koa 3', Koa },
  { name: 'Koa 2', Koa: Koa2 },
] as const;

async function koaStack(App: typeof Koa, target: string, options: { proxy?: Partial<ProxyOptions> } = {}): Promise<KoaStack> {
  const logs = new Recorder<LoggerLine>();
  const intact = new Recorder<IntactRecord>();
  const seen = new Recorder<SeenStatus>();
  const errors = new Recorder<{ readonly code: unknown; readonly headerSent: unknown }>();
  const app = new App();
  app.on('error', (error: { code?: unknown; headerSent?: unknown }) => errors.push({ code: error.code, headerSent: error.headerSent }));

  app.use(async (ctx, next) => {
    const url = ctx.originalUrl;
    ctx.res.once('close', () => {
      try {
        intact.push({ url, event: 'close', remoteAddress: remoteAddressOf(ctx.req), ip: ctx.ip, headersType: typeof ctx.headers, statusCode: ctx.res.statusCode });
      } catch (error) {
        intact.push({ url, event: 'close', remoteAddress: undefined, ip: undefined, headersType: 'unknown', statusCode: ctx.res.statusCode, error: String(error) });
      }
    });
    await next();
  });
  app.use(async (ctx, next) => {
    await next();
    seen.push({ url: ctx.originalUrl, status: ctx.status, upstreamHeader: ctx.response.get('x-upstream') });
  });
  app.use(
    logger({
      transporter: (line: string, args: unknown[]) => {
        // [format, method, url] on the way in; [format, method, url, status, time, length] on the way out.
        const plain = stripAnsi(line).trim();
        logs.push({
          line: plain,
          arrow: plain.split(' ')[0] ?? '',
          method: String(args[1]),
          url: String(args[2]),
          status: args.length >= 6 ? Number(args[3]) : null,
        });
      },
    }),
  );
  app.use(cors({ origin: APP_ORIGIN, credentials: true, exposeHeaders: ['x-upstream'] }));
  app.use(compress());
  app.use(bodyParser());
  const middleware = koaProxy({ target, registry: testRegistry(), retry: { minDelay: 1, maxDelay: 1 }, ...options.proxy });
  onCleanup(() => middleware.close());
  app.use(mount('/api', middleware));
  const callback = app.callback();
  const { url } = await listen((req: IncomingMessage, res: ServerResponse) => {
    void callback(req, res);
  });
  return { url, logs, intact, seen, errors };
}

async function expectLogger(stack: KoaStack, method: string, url: string, status: number): Promise<void> {
  const entry = await stack.logs.next(
    (l) => l.status !== null && l.method === method && l.url === url,
    `koa-logger's response line for ${method} ${url} (lines so far: ${JSON.stringify(stack.logs.items)})`,
  );
  expect(entry.status, entry.line).toBe(status);
}

/** A middleware before the proxy that awaited next() must see the status the client got. */
async function expectSeenStatus(stack: KoaStack, url: string, status: number): Promise<SeenStatus> {
  const entry = await stack.seen.next((s) => s.url === url, `the status seen after await next() for ${url}`);
  expect(entry.status, JSON.stringify(entry)).toBe(status);
  return entry;
}

async function expectAftermath(stack: KoaStack, method: string, url: string, status: number): Promise<void> {
  await expectLogger(stack, method, url, status);
  await expectIntact(stack.intact, url, status);
  await expectStillServing(stack.url);
  await expectSeenStatus(stack, url, status);
}


describe.each(KOA_VERSIONS)('$name with koa-logger, @koa/cors, koa-compress and @koa/bodyparser', ({ Koa: App }) => {
  it('buffered upload: a 200 KiB POST with Content-Length arrives byte for byte', async () => {
    const up = await startUpstream();
    const stack = await koaStack(App, up.url);
    const size = 200 * KiB;

    const reply = await send(`${stack.url}/api/upload/small`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: Buffer.concat([...pattern(size)]),
    });

    expect(reply.status).toBe(200);
    expect(reply.headers['x-upstream']).toBe('upload');
    expect(json(reply)).toMatchObject({ bytes: size, sha256: patternSha256(size), contentLength: String(size) });
    await expectAftermath(stack, 'POST', '/api/upload/small', 200);
  });

  it.each([
    { name: 'JSON with a big number and duplicate keys', type: 'application/json', body: '{"n":12345678901234567890,"k":1,"k":2}' },
    { name: 'a urlencoded form with a repeated key', type: 'application/x-www-form-urlencoded', body: 'a=1&a=2&s=hello+world%21' },
  ])('@koa/bodyparser read it: $name arrives byte for byte', async ({ type, body }) => {
    const up = await startUpstream();
    const stack = await koaStack(App, up.url);

    const reply = await send(`${stack.url}/api/upload/parsed`, { method: 'POST', headers: { 'content-type': type }, body: Buffer.from(body) });

    expect(reply.status).toBe(200);
    const received = await up.received.next((r) => r.url === '/upload/parsed', 'the parsed body at the upstream');
    expect(received.body.toString()).toBe(body);
    expect(received.headers['content-length']).toBe(String(Buffer.byteLength(body)));
    await expectAftermath(stack, 'POST', '/api/upload/parsed', 200);
  });

  it('streamed upload over the replay limit: a 3 MiB POST streams through byte for byte', async () => {
    const up = await startUpstream();
    const stack = await koaStack(App, up.url);
    const size = 3 * MiB;

    const reply = await send(`${stack.url}/api/upload/big`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'content-length': size },
      body: pattern(size),
    });

    expect(reply.status).toBe(200);
    expect(json(reply)).toMatchObject({ bytes: size, sha256: patternSha256(size), contentLength: String(size) });
    await expectAftermath(stack, 'POST', '/api/upload/big', 200);
  });

  it('chunked upload: Transfer-Encoding: chunked, no Content-Length, arrives byte for byte', async () => {
    const up = await startUpstream();
    const stack = await koaStack(App, up.url);
    // Past limits.requestBufferBytes (1 MiB), so the body streams on as it came: chunked.
    const size = 2 * MiB;

    const reply = await send(`${stack.url}/api/upload/chunked`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: pattern(size, 10 * KiB),
    });

    expect(reply.status).toBe(200);
    expect(json(reply)).toMatchObject({ bytes: size, sha256: patternSha256(size, 10 * KiB), contentLength: null });
    const received = await up.received.next((r) => r.url === '/upload/chunked', 'the chunked upload at the upstream');
    expect(received.headers['transfer-encoding']).toBe('chunked');
    await expectAftermath(stack, 'POST', '/api/upload/chunked', 200);
  });

  it('download: 2 MiB arrive intact', async () => {
    const up = await startUpstream();
    const stack = await koaStack(App, up.url);
    const size = 2 * MiB;

    const reply = await send(`${stack.url}/api/download?size=${size}&type=text/plain`, { headers: { 'accept-encoding': 'gzip' } });

    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('text/plain');
    // The proxied response is ctx.body: koa-compress compresses it.
    expect(reply.headers['content-encoding']).toBe('gzip');
    expect(reply.headers['content-length']).toBeUndefined();
    expect(reply.wireBytes).toBeLessThan(size / 10);
    expect([reply.body.length, sha256(reply.body)]).toStrictEqual([size, patternSha256(size)]);
    expect((await expectSeenStatus(stack, `/api/download?size=${size}&type=text/plain`, 200)).upstreamHeader).toBe('download');
    await expectAftermath(stack, 'GET', `/api/download?size=${size}&type=text/plain`, 200);
  });

  it('event stream: headers reach the client before the first event, and each event as it is sent', async () => {
    const up = await startUpstream();
    const stack = await koaStack(App, up.url);

    const result = await eventStream(stack.url, up, { 'accept-encoding': 'gzip' });

    expect(result.status).toBe(200);
    expect(result.headers['content-type']).toBe('text/event-stream');
    expect(result.text).toBe(`${FIRST_EVENT}${SECOND_EVENT}`);
    await expectAftermath(stack, 'GET', '/api/events', 200);
  });

  it('failure: an upstream 503 reaches the client as the 502 problem+json contract, UPSTREAM_STATUS', async () => {
    const up = await startUpstream();
    const stack = await koaStack(App, up.url);

    const reply = await send(`${stack.url}/api/fail`);

    expect(reply.status).toBe(502);
    expect(reply.headers['content-type']).toBe('application/problem+json');
    expect(reply.headers['proxy-status']).toBe('resilient-proxy; received-status=503');
    expect(json(reply)).toMatchObject({ status: 502, code: 'UPSTREAM_STATUS', attempts: 3 });
    await expectAftermath(stack, 'GET', '/api/fail', 502);
  });

  it("upstream cut mid-response: the client connection is cut, koa-logger logs -x-, and Koa's 'error' event has the cut", async () => {
    const up = await startUpstream();
    const stack = await koaStack(App, up.url);

    const result = await upstreamCutsMidResponse(stack.url, up);

    expect([result.status, result.cut]).toStrictEqual([200, true]);
    const entry = await stack.logs.next((l) => l.status !== null && l.url === '/api/stall', "koa-logger's line for the cut response");
    expect([entry.arrow, entry.status], entry.line).toStrictEqual(['-x-', 200]);
    expect(await stack.errors.next((e) => e.code === 'ERR_RESILIENT_PROXY_RESPONSE_CUT', "Koa's 'error' event for the cut")).toStrictEqual({ code: 'ERR_RESILIENT_PROXY_RESPONSE_CUT', headerSent: true });
    await expectIntact(stack.intact, '/api/stall', 200);
    await expectStillServing(stack.url);
  });

  it('client abort mid-response: the upstream request is cancelled and the app keeps serving', async () => {
    const up = await startUpstream();
    const stack = await koaStack(App, up.url);

    const head = await abortMidResponse(stack.url, up);

    expect(head.status).toBe(200);
    await expectAftermath(stack, 'GET', '/api/stall', 200);
    const entry = await stack.logs.next((l) => l.status !== null && l.url === '/api/stall', "koa-logger's line for the aborted request");
    expect(entry.arrow).toBe('-x-');
  });

  it('client abort mid-upload: the upstream request is cancelled, nothing crashes, and the app keeps serving', async () => {
    const up = await startUpstream();
    const stack = await koaStack(App, up.url);

    const ended = await abortMidUpload(stack.url, up);

    expect(ended.aborted).toBe(true);
    await expectIntact(stack.intact, '/api/upload/aborted', null);
    const entry = await stack.logs.next((l) => l.status !== null && l.url === '/api/upload/aborted', "koa-logger's line for the aborted upload");
    // No status was ever sent: the line says 499 (nginx's "client closed request"), never a 404 nobody sent.
    expect(entry.status).toBe(499);
    await stack.seen.next((s) => s.url === '/api/upload/aborted', 'the middleware before the proxy resuming after next()');
    await expectStillServing(stack.url);
  });

  it('@koa/cors headers, Vary: Origin included, are on proxied responses and on the 502', async () => {
    const up = await startUpstream();
    const stack = await koaStack(App, up.url);

    for (const path of ['/api/download?size=2048&type=text/plain', '/api/fail']) {
      const reply = await send(`${stack.url}${path}`, { headers: { origin: APP_ORIGIN } });
      const where = `${path}: ${JSON.stringify(reply.headers)}`;
      expect.soft(reply.status, where).toBe(path === '/api/fail' ? 502 : 200);
      expect.soft(reply.headers['access-control-allow-origin'], where).toBe(APP_ORIGIN);
      expect.soft(reply.headers['access-control-allow-credentials'], where).toBe('true');
      expect.soft(reply.headers['access-control-expose-headers'], where).toBe('x-upstream');
      const vary = (reply.headers.vary ?? '').toLowerCase().split(/\s*,\s*/);
      expect.soft(vary, `Vary of ${where}`).toContain('origin');
    }
    await expectStillServing(stack.url);
  });
});

// Ecosystem integration (issue 10), Fastify 5: the proxy plugin at /api in an
// app with Fastify's own pino request logging, @fastify/cors, @fastify/helmet,
// @fastify/compress and @fastify/rate-limit. Real servers on loopback; every
// wait is event-driven.

import { randomBytes, randomUUID } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import compress from '@fastify/compress';
import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import Fastify, { type FastifyPluginCallback } from 'fastify';
import Fastify4 from 'fastify4';
import type { ProxyOptions } from 'resilient-proxy';
import { fastifyProxy } from 'resilient-proxy/fastify';
import { describe, expect, it } from 'vitest';
import { onCleanup, testRegistry } from '../support.js';
import {
  FIRST_EVENT,
  KiB,
  LOOPBACK,
  LogLines,
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
  upstreamCutsMidResponse,
  watchProcess,
  within,
  type IntactRecord,
  type Problem,
} from './harness.js';

watchProcess();

const APP_ORIGIN = 'http://app.example';

interface FastifyStack {
  readonly url: string;
  readonly logs: LogLines;
  /** Snapshots taken when the raw response closed (every request, aborted ones too). */
  readonly intact: Recorder<IntactRecord>;
  /** Snapshots taken in an onResponse hook. */
  readonly onResponse: Recorder<IntactRecord>;
  /** What an app-wide onSend hook saw of each reply. */
  readonly onSend: Recorder<OnSendRecord>;
}

interface OnSendRecord {
  readonly url: string;
  readonly statusCode: number;
  readonly stream: boolean;
  readonly upstreamHeader: unknown;
}

interface FastifyStackOptions {
  readonly proxy?: Partial<ProxyOptions>;
  readonly rateLimit?: number;
  /** Fastify's request ids from X-Request-Id, else generated (`gen-<uuid>`). */
  readonly requestIds?: boolean;
}

/**
 * The @fastify plugins installed are the Fastify 5 majors, whose metadata
 * refuses Fastify 4; their hooks and decorators are the same on both, so on
 * Fastify 4 they are registered without the version check.
 */
function withoutVersionCheck<T>(plugin: T): T {
  const meta = Symbol.for('plugin-meta');
  const original = plugin as unknown as FastifyPluginCallback & Record<symbol, unknown>;
  const wrapped = ((instance, options, done) => original(instance, options, done)) as FastifyPluginCallback & Record<symbol, unknown>;
  wrapped[Symbol.for('skip-override')] = true;
  wrapped[meta] = { ...(original[meta] as object), fastify: undefined };
  return wrapped as unknown as T;
}

const FASTIFY_VERSIONS = [
  { name: 'Fastify 5', factory: Fastify, plugin: <T>(p: T): T => p },
  { name: 'Fastify 4', factory: Fastify4 as unknown as typeof Fastify, plugin: withoutVersionCheck },
] as const;

type FastifyVersion = (typeof FASTIFY_VERSIONS)[number];

async function fastifyStack(version: FastifyVersion, target: string, options: FastifyStackOptions = {}): Promise<FastifyStack> {
  const logs = new LogLines();
  const intact = new Recorder<IntactRecord>();
  const onResponse = new Recorder<IntactRecord>();
  const onSend = new Recorder<OnSendRecord>();
  const app = version.factory({
    logger: { level: 'info', stream: logs.stream },
    ...(options.requestIds === true ? { requestIdHeader: 'x-request-id', genReqId: () => `gen-${randomUUID()}` } : {}),
  });
  onCleanup(() => app.close());
  await app.register(version.plugin(cors), { origin: [APP_ORIGIN], credentials: true, exposedHeaders: ['x-upstream'] });
  await app.register(version.plugin(helmet));
  await app.register(version.plugin(compress));
  await app.register(version.plugin(rateLimit), { max: options.rateLimit ?? 1000, timeWindow: 60_000 });
  app.addHook('onRequest', (request, reply, done) => {
    const url = request.raw.url ?? '';
    reply.raw.once('close', () => {
      try {
        intact.push({
          url,
          event: 'close',
          remoteAddress: remoteAddressOf(request.raw),
          ip: request.ip,
          headersType: typeof request.headers,
          statusCode: reply.raw.statusCode,
        });
      } catch (error) {
        intact.push({ url, event: 'close', remoteAddress: undefined, ip: undefined, headersType: 'unknown', statusCode: reply.raw.statusCode, error: String(error) });
      }
    });
    done();
  });
  app.addHook('onSend', (request, reply, payload, done) => {
    const stream = typeof payload === 'object' && payload !== null && typeof (payload as { pipe?: unknown }).pipe === 'function';
    onSend.push({ url: request.raw.url ?? '', statusCode: reply.statusCode, stream, upstreamHeader: reply.getHeader('x-upstream') });
    done(null, payload);
  });
  app.addHook('onResponse', (request, reply, done) => {
    const url = request.raw.url ?? '';
    try {
      onResponse.push({
        url,
        event: 'close',
        remoteAddress: remoteAddressOf(request.raw),
        ip: request.ip,
        headersType: typeof request.headers,
        statusCode: reply.statusCode,
      });
    } catch (error) {
      onResponse.push({ url, event: 'close', remoteAddress: undefined, ip: undefined, headersType: 'unknown', statusCode: reply.statusCode, error: String(error) });
    }
    done();
  });
  app.get('/local', () => ({ local: true }));
  await app.register(fastifyProxy, { prefix: '/api', target, registry: testRegistry(), retry: { minDelay: 1, maxDelay: 1 }, ...options.proxy });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url, logs, intact, onResponse, onSend };
}

interface FastifyLogLine {
  readonly reqId?: string;
  readonly level: number;
  readonly msg: string;
  readonly err?: { readonly code?: string; readonly message?: string };
  readonly req?: { readonly method?: string; readonly url?: string; readonly remoteAddress?: string };
  readonly res?: { readonly statusCode?: number };
}

/** Fastify's request log: the `incoming request` line names the URL, the `request completed` line of the same reqId the status. */
async function expectFastifyLog(stack: FastifyStack, method: string, url: string, status: number): Promise<void> {
  const incoming = JSON.parse(
    await stack.logs.next((l) => {
      const entry = JSON.parse(l) as FastifyLogLine;
      return entry.msg === 'incoming request' && entry.req?.method === method && entry.req.url === url;
    }, `Fastify's 'incoming request' line for ${method} ${url}`),
  ) as FastifyLogLine;
  expect(incoming.req?.remoteAddress).toMatch(LOOPBACK);
  const completed = await stack.logs.next((l) => {
    const entry = JSON.parse(l) as FastifyLogLine;
    return entry.msg === 'request completed' && entry.reqId === incoming.reqId;
  }, `Fastify's 'request completed' line for ${method} ${url} (lines so far: ${JSON.stringify(stack.logs.items)})`);
  expect((JSON.parse(completed) as FastifyLogLine).res?.statusCode, completed).toBe(status);
}

/** The reqId Fastify logged for `method url`. */
async function loggedReqId(stack: FastifyStack, method: string, url: string): Promise<string | undefined> {
  const line = await stack.logs.next((l) => {
    const entry = JSON.parse(l) as FastifyLogLine;
    return entry.msg === 'incoming request' && entry.req?.method === method && entry.req.url === url;
  }, `Fastify's 'incoming request' line for ${method} ${url}`);
  return (JSON.parse(line) as FastifyLogLine).reqId;
}

async function expectAftermath(stack: FastifyStack, method: string, url: string, status: number): Promise<void> {
  await expectFastifyLog(stack, method, url, status);
  await expectIntact(stack.intact, url, status);
  await expectIntact(stack.onResponse, url, status);
  await expectStillServing(stack.url);
}


describe.each(FASTIFY_VERSIONS)('$name with logger, cors, helmet, compress and rate-limit', (version) => {
  it('buffered upload: a 200 KiB POST with Content-Length arrives byte for byte', async () => {
    const up = await startUpstream();
    const stack = await fastifyStack(version, up.url);
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

  it('a JSON body is not parsed by Fastify under the prefix: it arrives byte for byte', async () => {
    const up = await startUpstream();
    const stack = await fastifyStack(version, up.url);
    const body = Buffer.from('{"n":12345678901234567890,"k":1,"k":2}');

    const reply = await send(`${stack.url}/api/upload/json`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });

    expect(reply.status).toBe(200);
    const received = await up.received.next((r) => r.url === '/upload/json', 'the JSON body at the upstream');
    expect(received.body.toString()).toBe(body.toString());
    expect(received.headers['content-length']).toBe(String(body.length));
    await expectAftermath(stack, 'POST', '/api/upload/json', 200);
  });

  it.each([
    { name: 'small (1 KiB of text)', plain: Buffer.from('x'.repeat(1024)) },
    { name: 'at the replay limit (1 MiB of incompressible bytes)', plain: randomBytes(MiB) },
    { name: 'streamed (3 MiB of incompressible bytes)', plain: randomBytes(3 * MiB) },
  ])('a gzip-encoded upload (Content-Encoding: gzip), $name, reaches the upstream as sent although @fastify/compress decompresses request bodies', async ({ plain }) => {
    const up = await startUpstream();
    const stack = await fastifyStack(version, up.url);
    const body = gzipSync(plain);

    const reply = await send(`${stack.url}/api/upload/gzip`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip' },
      body,
    });

    expect(reply.status).toBe(200);
    expect(json(reply)).toMatchObject({ bytes: body.length, sha256: sha256(body), contentLength: String(body.length) });
    const received = await up.received.next((r) => r.url === '/upload/gzip', 'the gzip upload at the upstream');
    expect(received.headers['content-encoding']).toBe('gzip');
    await expectAftermath(stack, 'POST', '/api/upload/gzip', 200);
  });

  it('streamed upload over the replay limit (retry.maxBodyBytes 1 KiB, 256 KiB body) arrives byte for byte', async () => {
    const up = await startUpstream();
    const stack = await fastifyStack(version, up.url, { proxy: { retry: { minDelay: 1, maxDelay: 1, maxBodyBytes: 1024 } } });
    const size = 256 * KiB;

    const reply = await send(`${stack.url}/api/upload/big`, {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream', 'content-length': size },
      body: pattern(size, 16 * KiB),
    });

    expect(reply.status).toBe(200);
    expect(json(reply)).toMatchObject({ bytes: size, sha256: patternSha256(size, 16 * KiB), contentLength: String(size) });
    await expectAftermath(stack, 'PUT', '/api/upload/big', 200);
  });

  it('chunked upload: Transfer-Encoding: chunked, no Content-Length, arrives byte for byte', async () => {
    const up = await startUpstream();
    const stack = await fastifyStack(version, up.url);
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
    const stack = await fastifyStack(version, up.url);
    const size = 2 * MiB;

    const reply = await send(`${stack.url}/api/download?size=${size}`, { headers: { 'accept-encoding': 'gzip' } });

    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('application/octet-stream');
    // The response goes through the reply: @fastify/compress (an onSend hook) compresses it.
    expect(reply.headers['content-encoding']).toBe('gzip');
    expect(reply.headers['content-length']).toBeUndefined();
    expect(reply.wireBytes).toBeLessThan(size / 10);
    expect([reply.body.length, sha256(reply.body)]).toStrictEqual([size, patternSha256(size)]);
    expect(await stack.onSend.next((o) => o.url === `/api/download?size=${size}`, 'the onSend hook for the download')).toMatchObject({ stream: true, upstreamHeader: 'download' });
    await expectAftermath(stack, 'GET', `/api/download?size=${size}`, 200);
  });

  it('event stream: headers reach the client before the first event, and each event as it is sent', async () => {
    const up = await startUpstream();
    const stack = await fastifyStack(version, up.url);

    const result = await eventStream(stack.url, up, { 'accept-encoding': 'gzip' });

    expect(result.status).toBe(200);
    expect(result.headers['content-type']).toBe('text/event-stream');
    expect(result.text).toBe(`${FIRST_EVENT}${SECOND_EVENT}`);
    await expectAftermath(stack, 'GET', '/api/events', 200);
  });

  it('failure: an upstream 503 reaches the client as the 502 problem+json contract, UPSTREAM_STATUS', async () => {
    const up = await startUpstream();
    const stack = await fastifyStack(version, up.url);

    const reply = await send(`${stack.url}/api/fail`);

    expect(reply.status).toBe(502);
    expect(reply.headers['content-type']).toBe('application/problem+json');
    expect(reply.headers['proxy-status']).toBe('resilient-proxy; received-status=503');
    expect(json(reply)).toMatchObject({ status: 502, code: 'UPSTREAM_STATUS', attempts: 3 });
    // The contract goes through the reply too.
    expect(await stack.onSend.next((o) => o.url === '/api/fail', 'the onSend hook for the 502')).toMatchObject({ statusCode: 502, stream: false });
    await expectAftermath(stack, 'GET', '/api/fail', 502);
  });

  it('upstream cut mid-response: the client connection is cut, and Fastify logs it with the cut error, never as completed', async () => {
    const up = await startUpstream();
    const stack = await fastifyStack(version, up.url);

    const result = await upstreamCutsMidResponse(stack.url, up);

    expect([result.status, result.cut]).toStrictEqual([200, true]);
    const reqId = await loggedReqId(stack, 'GET', '/api/stall');
    const line = await stack.logs.next((l) => {
      const entry = JSON.parse(l) as FastifyLogLine;
      return entry.reqId === reqId && entry.level >= 40;
    }, `Fastify's warning or error line for the cut response (lines so far: ${JSON.stringify(stack.logs.items)})`);
    expect((JSON.parse(line) as FastifyLogLine).err?.code, line).toBe('ERR_RESILIENT_PROXY_RESPONSE_CUT');
    await expectIntact(stack.intact, '/api/stall', 200);
    await expectStillServing(stack.url);
    // The follow-up request's completion is logged after the cut one's would have been.
    await stack.logs.next((l) => (JSON.parse(l) as FastifyLogLine).msg === 'request completed' && (JSON.parse(l) as FastifyLogLine).reqId !== reqId, 'the follow-up request completed');
    const completed = stack.logs.items.filter((l) => (JSON.parse(l) as FastifyLogLine).reqId === reqId && (JSON.parse(l) as FastifyLogLine).msg === 'request completed');
    expect(completed).toStrictEqual([]);
  });

  it('an onSend hook that fails on a proxied response: Fastify answers with its error, and the upstream request is cancelled', async () => {
    const up = await startUpstream();
    const app = version.factory({ logger: false });
    onCleanup(() => app.close());
    app.addHook('onSend', (_request, _reply, payload, done) => {
      done(new Error('onSend refused'));
    });
    await app.register(fastifyProxy, { prefix: '/api', target: up.url, registry: testRegistry() });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });

    const reply = await send(`${url}/api/stall`);

    expect([reply.status, (json(reply) as { message?: string }).message]).toStrictEqual([500, 'onSend refused']);
    const stall = await up.open.next((o) => o.url === '/stall', 'the upstream serving /stall');
    await within(stall.closed, 'the proxy cancelling the upstream response Fastify did not send');
    expect(stall.cancelled()).toBe(true);
  });

  it('client abort mid-response: the upstream request is cancelled and the app keeps serving', async () => {
    const up = await startUpstream();
    const stack = await fastifyStack(version, up.url);

    const head = await abortMidResponse(stack.url, up);

    expect(head.status).toBe(200);
    // Fastify logs completion and runs onResponse only on 'finish' (never for an
    // aborted response, proxied or not); the raw 'close' snapshot still applies.
    await expectIntact(stack.intact, '/api/stall', 200);
    await expectStillServing(stack.url);
  });

  it('client abort mid-upload: the upstream request is cancelled, nothing crashes, and the app keeps serving', async () => {
    const up = await startUpstream();
    const stack = await fastifyStack(version, up.url);

    const ended = await abortMidUpload(stack.url, up);

    expect(ended.aborted).toBe(true);
    await expectIntact(stack.intact, '/api/upload/aborted', null);
    await expectStillServing(stack.url);
  });

  it("Fastify's request id (requestIdHeader + genReqId) is the one the proxy sends upstream and puts in the 502", async () => {
    const up = await startUpstream();
    const stack = await fastifyStack(version, up.url, { requestIds: true });

    const ok = await send(`${stack.url}/api/ping?rid=generated`);
    const failed = await send(`${stack.url}/api/fail`);

    expect([ok.status, failed.status]).toStrictEqual([200, 502]);
    const arrived = await up.arrived.next((a) => a.url === '/ping?rid=generated', 'the request at the upstream');
    const okId = await loggedReqId(stack, 'GET', '/api/ping?rid=generated');
    expect(okId).toMatch(/^gen-[0-9a-f-]{36}$/);
    expect(arrived.headers['x-request-id']).toBe(okId);
    const failId = await loggedReqId(stack, 'GET', '/api/fail');
    expect([failed.headers['x-request-id'], (json(failed) as Problem).requestId]).toStrictEqual([failId, failId]);
  });

  it('@fastify/helmet, @fastify/cors and @fastify/rate-limit headers are on proxied responses and on the 502', async () => {
    const up = await startUpstream();
    const stack = await fastifyStack(version, up.url);

    for (const path of ['/api/download?size=2048&type=text/plain', '/api/fail']) {
      const reply = await send(`${stack.url}${path}`, { headers: { origin: APP_ORIGIN } });
      const where = `${path}: ${JSON.stringify(reply.headers)}`;
      expect.soft(reply.status, where).toBe(path === '/api/fail' ? 502 : 200);
      // @fastify/helmet
      expect.soft(reply.headers['x-content-type-options'], where).toBe('nosniff');
      expect.soft(reply.headers['x-frame-options'], where).toBe('SAMEORIGIN');
      // @fastify/cors
      expect.soft(reply.headers['access-control-allow-origin'], where).toBe(APP_ORIGIN);
      expect.soft(reply.headers['access-control-allow-credentials'], where).toBe('true');
      expect.soft(reply.headers['access-control-expose-headers'], where).toBe('x-upstream');
      const vary = (reply.headers.vary ?? '').toLowerCase().split(/\s*,\s*/);
      expect.soft(vary, `Vary of ${where}`).toContain('origin');
      // @fastify/rate-limit
      expect.soft(reply.headers['x-ratelimit-limit'], where).toBe('1000');
      expect.soft(reply.headers['x-ratelimit-remaining'] ?? '(none)', where).toMatch(/^99\d$/);
    }
    await expectStillServing(stack.url);
  });

  it('@fastify/cors answers a preflight itself; the upstream never sees it', async () => {
    const up = await startUpstream();
    const stack = await fastifyStack(version, up.url);

    const reply = await send(`${stack.url}/api/upload/x`, {
      method: 'OPTIONS',
      headers: { origin: APP_ORIGIN, 'access-control-request-method': 'PUT', 'access-control-request-headers': 'content-type' },
    });

    expect(reply.status).toBe(204);
    expect(reply.headers['access-control-allow-origin']).toBe(APP_ORIGIN);
    await expectStillServing(stack.url);
    expect(up.received.items.map((r) => `${r.method} ${r.url}`)).toStrictEqual(['GET /ping?after=1']);
  });

  it('@fastify/rate-limit answers 429 itself once the limit is spent; the upstream sees only the allowed requests', async () => {
    const up = await startUpstream();
    const stack = await fastifyStack(version, up.url, { rateLimit: 2 });

    const statuses: number[] = [];
    for (let i = 0; i < 3; i += 1) statuses.push((await send(`${stack.url}/api/ping?n=${i}`)).status);

    expect(statuses).toStrictEqual([200, 200, 429]);
    expect(up.received.items.map((r) => r.url)).toStrictEqual(['/ping?n=0', '/ping?n=1']);
    await expectFastifyLog(stack, 'GET', '/api/ping?n=2', 429);
  });
});

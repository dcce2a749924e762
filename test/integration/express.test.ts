// Ecosystem integration (issue 10), Express 5 and 4: the proxy at /api behind
// morgan (every predefined format), pino-http, helmet, cors, express-rate-limit,
// compression, cookie-parser, express-session and body parsers, with multer on a
// sibling route. Real servers on loopback; every wait is event-driven.

import type { RequestHandler } from 'express';
import { requestId } from 'resilient-proxy';
import { describe, expect, it } from 'vitest';
import { onCleanup } from '../support.js';
import {
  FIRST_EVENT,
  KiB,
  MiB,
  SECOND_EVENT,
  abortMidResponse,
  abortMidUpload,
  eventStream,
  expectIntact,
  expectStillServing,
  json,
  multipartBody,
  pattern,
  patternSha256,
  send,
  sha256,
  startUpstream,
  upstreamCutsMidResponse,
  watchProcess,
  type Problem,
} from './harness.js';
import { APP_ORIGIN, EXPRESS_VERSIONS, expectAftermath, expectMorgan, expectPino, expressStack, type PinoHttpLine } from './express-stack.js';

watchProcess();

describe.each(EXPRESS_VERSIONS)('$name with the full middleware stack', ({ factory }) => {
  it('buffered upload: a 200 KiB POST with Content-Length arrives byte for byte', async () => {
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url);
    const size = 200 * KiB;

    const reply = await send(`${stack.url}/api/upload/small`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: Buffer.concat([...pattern(size)]),
    });

    expect(reply.status).toBe(200);
    expect(reply.headers['x-upstream']).toBe('upload');
    expect(json(reply)).toStrictEqual({
      bytes: size,
      sha256: patternSha256(size),
      contentType: 'application/octet-stream',
      contentLength: String(size),
      transferEncoding: null,
    });
    const received = await up.received.next((r) => r.url === '/upload/small', 'the upload at the upstream');
    expect([received.method, received.bytes, received.sha256]).toStrictEqual(['POST', size, patternSha256(size)]);
    await expectAftermath(stack, 'POST', '/api/upload/small', 200);
  });

  it('streamed upload over the replay limit: a 3 MiB POST streams through byte for byte', async () => {
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url);
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

  it('a streamed upload over a small retry.maxBodyBytes (1 KiB) streams through byte for byte', async () => {
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url, { proxy: { retry: { minDelay: 1, maxDelay: 1, maxBodyBytes: 1024 } } });
    const size = 256 * KiB;

    const reply = await send(`${stack.url}/api/upload/over-limit`, {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream', 'content-length': size },
      body: pattern(size, 16 * KiB),
    });

    expect(reply.status).toBe(200);
    expect(json(reply)).toMatchObject({ bytes: size, sha256: patternSha256(size, 16 * KiB) });
    await expectAftermath(stack, 'PUT', '/api/upload/over-limit', 200);
  });

  it('chunked upload: Transfer-Encoding: chunked, no Content-Length, arrives byte for byte', async () => {
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url);
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
    expect(received.headers['content-length']).toBeUndefined();
    expect(received.headers['transfer-encoding']).toBe('chunked');
    await expectAftermath(stack, 'POST', '/api/upload/chunked', 200);
  });

  it('download: 2 MiB arrive intact, without compression', async () => {
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url);
    const size = 2 * MiB;

    const reply = await send(`${stack.url}/api/download?size=${size}`, { headers: { 'accept-encoding': 'identity' } });

    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('application/octet-stream');
    expect(reply.headers['content-length']).toBe(String(size));
    expect(reply.headers['content-encoding']).toBeUndefined();
    expect([reply.body.length, sha256(reply.body)]).toStrictEqual([size, patternSha256(size)]);
    await expectAftermath(stack, 'GET', `/api/download?size=${size}`, 200);
  });

  it('download: 2 MiB of text arrive intact through compression (gzip)', async () => {
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url);
    const size = 2 * MiB;

    const reply = await send(`${stack.url}/api/download?size=${size}&type=text/plain`, { headers: { 'accept-encoding': 'gzip' } });

    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('text/plain');
    expect(reply.headers['content-encoding']).toBe('gzip');
    expect(reply.wireBytes).toBeLessThan(size);
    expect([reply.body.length, sha256(reply.body)]).toStrictEqual([size, patternSha256(size)]);
    await expectAftermath(stack, 'GET', `/api/download?size=${size}&type=text/plain`, 200);
  });

  it('event stream: headers reach the client before the first event, and each event as it is sent', async () => {
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url);

    const result = await eventStream(stack.url, up, { 'accept-encoding': 'identity' });

    expect(result.status).toBe(200);
    expect(result.headers['content-type']).toBe('text/event-stream');
    expect(result.text).toBe(`${FIRST_EVENT}${SECOND_EVENT}`);
    await expectAftermath(stack, 'GET', '/api/events', 200);
  });

  it('event stream through compression: a client that accepts gzip still gets each event as it is sent', async () => {
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url);

    const result = await eventStream(stack.url, up, { 'accept-encoding': 'gzip' });

    expect(result.status).toBe(200);
    expect(result.headers['content-type']).toBe('text/event-stream');
    expect(result.text).toBe(`${FIRST_EVENT}${SECOND_EVENT}`);
    await expectAftermath(stack, 'GET', '/api/events', 200);
  });

  it('event stream whose upstream sends the first event with its headers, through compression: the client gets it while the stream is open', async () => {
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url);

    const result = await eventStream(stack.url, up, { 'accept-encoding': 'gzip' }, { eager: true });

    expect(result.status).toBe(200);
    expect(result.text).toBe(`${FIRST_EVENT}${SECOND_EVENT}`);
    await expectAftermath(stack, 'GET', '/api/events?eager=1', 200);
  });

  it('compression: a large compressed download leaves no listener behind on the compressor (no MaxListenersExceededWarning)', async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => {
      warnings.push(`${warning.name}: ${warning.message}`);
    };
    process.on('warning', onWarning);
    onCleanup(() => process.off('warning', onWarning));
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url);
    const size = 8 * MiB;

    const reply = await send(`${stack.url}/api/download?size=${size}&type=text/plain`, { headers: { 'accept-encoding': 'gzip' } });

    expect(reply.status).toBe(200);
    expect(reply.headers['content-encoding']).toBe('gzip');
    expect([reply.body.length, sha256(reply.body)]).toStrictEqual([size, patternSha256(size)]);
    await expectAftermath(stack, 'GET', `/api/download?size=${size}&type=text/plain`, 200);
    // process.emitWarning delivers on the next tick; the aftermath above took several.
    expect(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning')).join('\n'), 'process warnings').toBe('');
  });

  it('failure: an upstream 503 reaches the client as the 502 problem+json contract, UPSTREAM_STATUS', async () => {
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url);

    const reply = await send(`${stack.url}/api/fail`, { headers: { accept: 'application/json' } });

    expect(reply.status).toBe(502);
    expect(reply.headers['content-type']).toBe('application/problem+json');
    expect(reply.headers['cache-control']).toBe('no-store');
    expect(reply.headers['proxy-status']).toBe('resilient-proxy; received-status=503');
    const problem = json(reply) as Problem;
    expect(problem).toMatchObject({ status: 502, code: 'UPSTREAM_STATUS', attempts: 3 });
    expect(reply.headers['x-request-id']).toBe(problem.requestId);
    await expectAftermath(stack, 'GET', '/api/fail', 502, 'request errored');
  });

  it('upstream cut mid-response: the client connection is cut; pino-http logs "request errored" with the cut, morgan the head it saw and `:delivered` cut', async () => {
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url);

    const result = await upstreamCutsMidResponse(stack.url, up);

    expect([result.status, result.cut]).toStrictEqual([200, true]);
    const entry = (await expectPino(stack, 'GET', '/api/stall', 200, 'request errored')) as PinoHttpLine & { err?: { code?: string } };
    expect(entry.err?.code).toBe('ERR_RESILIENT_PROXY_RESPONSE_CUT');
    // morgan logs the status of the head the client got: it has no field for a cut body.
    await expectMorgan(stack, 'GET', '/api/stall', 200);
    expect(await stack.delivered.next((l) => l.startsWith('GET /api/stall '), "morgan's :delivered line")).toBe('GET /api/stall 200 cut');
    await expectIntact(stack.intact, '/api/stall', 200);
    await expectStillServing(stack.url);
  });

  it('a whole download is logged by morgan with `:delivered` whole', async () => {
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url);

    const reply = await send(`${stack.url}/api/ping`);

    expect(reply.status).toBe(200);
    expect(await stack.delivered.next((l) => l.startsWith('GET /api/ping '), "morgan's :delivered line")).toBe('GET /api/ping 200 whole');
  });

  it('client abort mid-response: the upstream request is cancelled and the app keeps serving', async () => {
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url);

    const head = await abortMidResponse(stack.url, up);

    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(8 * MiB));
    await expectAftermath(stack, 'GET', '/api/stall', 200, 'request aborted');
  });

  it('client abort mid-upload: the upstream request is cancelled, nothing crashes, and the app keeps serving', async () => {
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url);

    const ended = await abortMidUpload(stack.url, up);

    expect(ended.aborted).toBe(true);
    // The client got no response at all: morgan logs `-` for the status.
    await expectMorgan(stack, 'POST', '/api/upload/aborted', null);
    await expectPino(stack, 'POST', '/api/upload/aborted', null, 'request aborted');
    await expectIntact(stack.intact, '/api/upload/aborted', null);
    await expectStillServing(stack.url);
  });

  it("with pino-http's default ids mounted, a client's X-Request-Id still reaches the upstream unchanged", async () => {
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url);

    const reply = await send(`${stack.url}/api/ping?rid=client`, { headers: { 'x-request-id': 'client-id-123' } });

    expect(reply.status).toBe(200);
    const arrived = await up.arrived.next((a) => a.url === '/ping?rid=client', 'the request at the upstream');
    expect(arrived.headers['x-request-id']).toBe('client-id-123');
  });

  it('pino-http with genReqId: requestId logs the id the proxy sent upstream and put in the 502', async () => {
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url, { genReqId: (req) => requestId(req) });

    const ok = await send(`${stack.url}/api/ping?rid=generated`);
    const failed = await send(`${stack.url}/api/fail`);

    expect([ok.status, failed.status]).toStrictEqual([200, 502]);
    const arrived = await up.arrived.next((a) => a.url === '/ping?rid=generated', 'the request at the upstream');
    const okLine = await expectPino(stack, 'GET', '/api/ping?rid=generated', 200);
    expect(okLine.req?.id).toBe(arrived.headers['x-request-id']);
    expect(okLine.req?.id).toMatch(/^[0-9a-f-]{36}$/);
    const failLine = await expectPino(stack, 'GET', '/api/fail', 502, 'request errored');
    const problem = json(failed) as Problem;
    expect([failed.headers['x-request-id'], problem.requestId]).toStrictEqual([failLine.req?.id, failLine.req?.id]);
  });

  it("helmet, cors and express-rate-limit headers are on proxied responses and on the 502, and cors's Vary: Origin survives", async () => {
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url);

    for (const path of ['/api/download?size=2048&type=text/plain', '/api/fail']) {
      const reply = await send(`${stack.url}${path}`, { headers: { origin: APP_ORIGIN, 'accept-encoding': 'gzip' } });
      const where = `${path}: ${JSON.stringify(reply.headers)}`;
      // Soft: one lost header must not hide the others.
      expect.soft(reply.status, where).toBe(path === '/api/fail' ? 502 : 200);
      // helmet
      expect.soft(reply.headers['x-content-type-options'], where).toBe('nosniff');
      expect.soft(reply.headers['x-frame-options'], where).toBe('SAMEORIGIN');
      expect.soft(reply.headers['content-security-policy'], where).toContain("default-src 'self'");
      expect.soft(reply.headers['strict-transport-security'] ?? '(none)', where).toMatch(/^max-age=\d+/);
      // cors
      expect.soft(reply.headers['access-control-allow-origin'], where).toBe(APP_ORIGIN);
      expect.soft(reply.headers['access-control-allow-credentials'], where).toBe('true');
      expect.soft(reply.headers['access-control-expose-headers'], where).toBe('x-upstream');
      // express-rate-limit, draft-8 headers
      expect.soft(reply.headers['ratelimit-policy'] ?? '(none)', where).toMatch(/^"1000-in-1min"; q=1000; w=60/);
      expect.soft(reply.headers.ratelimit ?? '(none)', where).toMatch(/^"1000-in-1min"; r=99\d; t=\d+$/);
      // A response that varies by Origin must say so, or a shared cache serves one origin's CORS answer to another.
      const vary = (reply.headers.vary ?? '').toLowerCase().split(/\s*,\s*/);
      expect.soft(vary, `Vary of ${where}`).toContain('origin');
      expect.soft(vary, `Vary of ${where}`).toContain('accept-encoding');
    }
    await expectStillServing(stack.url);
  });

  it('express-session: the session cookie is set on a proxied response beside the upstream cookie, and the session is saved', async () => {
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url);

    const first = await send(`${stack.url}/api/download?size=16`);
    expect(first.status).toBe(200);
    const cookies = first.headers['set-cookie'] ?? [];
    const sid = cookies.find((c) => c.startsWith('sid='));
    expect(cookies, JSON.stringify(cookies)).toContain('up=1; Path=/');
    expect(sid, JSON.stringify(cookies)).toMatch(/^sid=s%3A[^;]+; Path=\/; HttpOnly$/);
    const cookie = (sid ?? '').split(';')[0] ?? '';

    const failed = await send(`${stack.url}/api/fail`, { headers: { cookie } });
    expect(failed.status).toBe(502);
    const after = await send(`${stack.url}/session`, { headers: { cookie } });

    expect([after.status, json(after)]).toStrictEqual([200, { views: 2 }]);
    await expectStillServing(stack.url);
  });

  it('a cookie the app set before the proxy (res.cookie) is kept beside the upstream Set-Cookie', async () => {
    const up = await startUpstream();
    const setCookie: RequestHandler = (_req, res, next) => {
      res.cookie('gw', 'gateway', { signed: true, httpOnly: true });
      next();
    };
    const stack = await expressStack(factory, up.url, { beforeProxy: [setCookie] });

    const reply = await send(`${stack.url}/api/download?size=16`);
    const failed = await send(`${stack.url}/api/fail`);

    expect(reply.status).toBe(200);
    const cookies = reply.headers['set-cookie'] ?? [];
    expect.soft(cookies, 'proxied 200').toContain('up=1; Path=/');
    expect.soft(cookies.some((c) => c.startsWith('gw=s%3Agateway.')), `proxied 200: ${JSON.stringify(cookies)}`).toBe(true);
    expect(failed.status).toBe(502);
    const onError = failed.headers['set-cookie'] ?? [];
    expect.soft(onError.some((c) => c.startsWith('gw=s%3Agateway.')), `502: ${JSON.stringify(onError)}`).toBe(true);
    await expectStillServing(stack.url);
  });

  it('cors answers a preflight itself; the upstream never sees it', async () => {
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url);

    const reply = await send(`${stack.url}/api/upload/x`, {
      method: 'OPTIONS',
      headers: { origin: APP_ORIGIN, 'access-control-request-method': 'PUT', 'access-control-request-headers': 'content-type' },
    });

    expect(reply.status).toBe(204);
    expect(reply.headers['access-control-allow-origin']).toBe(APP_ORIGIN);
    expect(reply.headers['access-control-allow-methods']).toContain('PUT');
    await expectStillServing(stack.url);
    expect(up.received.items.map((r) => `${r.method} ${r.url}`)).toStrictEqual(['GET /ping?after=1']);
  });

  it('express-rate-limit answers 429 itself once the limit is spent; the upstream sees only the allowed requests', async () => {
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url, { rateLimit: 2 });

    const statuses: number[] = [];
    for (let i = 0; i < 3; i += 1) statuses.push((await send(`${stack.url}/api/ping?n=${i}`)).status);

    expect(statuses).toStrictEqual([200, 200, 429]);
    expect(up.received.items.map((r) => r.url)).toStrictEqual(['/ping?n=0', '/ping?n=1']);
    await expectMorgan(stack, 'GET', '/api/ping?n=2', 429);
    await expectPino(stack, 'GET', '/api/ping?n=2', 429);
  });

  it('multer on a sibling route parses its multipart upload, and a multipart upload to /api reaches the upstream byte for byte', async () => {
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url);
    const file = Buffer.concat([...pattern(300 * KiB)]);
    const { body, contentType } = multipartBody(file);

    const local = await send(`${stack.url}/upload`, { method: 'POST', headers: { 'content-type': contentType }, body });
    const proxied = await send(`${stack.url}/api/upload/multipart`, { method: 'POST', headers: { 'content-type': contentType }, body });

    expect([local.status, json(local)]).toStrictEqual([200, { field: 'hello', size: file.length, sha256: sha256(file) }]);
    expect(proxied.status).toBe(200);
    expect(json(proxied)).toMatchObject({ bytes: body.length, sha256: sha256(body), contentType });
    await expectAftermath(stack, 'POST', '/api/upload/multipart', 200);
  });
});

// The request and response objects the proxy is handed belong to the app:
// after every outcome, for buffered and streamed bodies alike, the middleware
// around the proxy still reads `req.socket`, `req.ip` and `req.headers`.
// (Mounted behind morgan, one streamed upload once took the process down.)

import { once } from 'node:events';
import { request as httpRequest, type RequestListener } from 'node:http';
import { Writable } from 'node:stream';
import express, { type Request } from 'express';
import Fastify from 'fastify';
import Koa from 'koa';
import mount from 'koa-mount';
import morgan from 'morgan';
import { pino } from 'pino';
import { pinoHttp } from 'pino-http';
import { describe, expect, it } from 'vitest';
import { fastifyProxy } from '../src/fastify.js';
import { requestId, type ProxyOptions } from '../src/index.js';
import { koaProxy } from '../src/koa.js';
import { faults, refusedUrl, type Behaviour } from '../src/testing/index.js';
import { listen, onCleanup, proxy, testRegistry, upstream } from './support.js';

interface Seen {
  readonly remoteAddress: string | undefined;
  readonly ip: string | undefined;
  readonly headers: string;
}

/** morgan's output, one line per response, and a promise for the next line. */
function logLines(): { stream: Writable; next: () => Promise<string> } {
  const lines: string[] = [];
  const waiting: ((line: string) => void)[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      const line = chunk.toString().trim();
      const waiter = waiting.shift();
      if (waiter === undefined) lines.push(line);
      else waiter(line);
      done();
    },
  });
  return { stream, next: () => (lines.length > 0 ? Promise.resolve(lines.shift() ?? '') : new Promise((resolve) => waiting.push(resolve))) };
}

type BodyKind = 'buffered' | 'streamed' | 'chunked';

/** Sends `size` bytes as a POST and resolves with the status, or `null` when the connection was cut. */
function upload(url: string, size: number, kind: BodyKind, abortAfterHead = false): Promise<number | null> {
  return new Promise((resolve) => {
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (kind !== 'chunked') headers['content-length'] = String(size);
    const req = httpRequest(url, { method: 'POST', headers, agent: false }, (res) => {
      if (abortAfterHead) {
        req.destroy();
        resolve(null);
        return;
      }
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
    });
    req.once('error', () => resolve(null));
    const chunk = Buffer.alloc(16 * 1024, 'x');
    for (let sent = 0; sent < size; sent += chunk.length) req.write(chunk.subarray(0, Math.min(chunk.length, size - sent)));
    req.end();
  });
}

/** An Express 5 app with morgan('combined') and a watcher in front of the proxy. */
async function expressApp(target: string, options: { retries?: number; requestBodyBytes?: number; behaviourTimeout?: number } = {}) {
  const log = logLines();
  const seen: Seen[] = [];
  const closed: Promise<unknown>[] = [];
  const app = express();
  app.use(morgan('combined', { stream: log.stream }));
  app.use((req: Request, res, next) => {
    closed.push(
      once(res, 'close').then(() => {
        // The types promise a socket; after the defect this guards, it was null.
        seen.push({ remoteAddress: (req.socket as Request['socket'] | null)?.remoteAddress, ip: req.ip, headers: typeof req.headers });
      }),
    );
    next();
  });
  app.use(
    '/api',
    proxy({
      target,
      retry: { retries: options.retries ?? 2, maxBodyBytes: 1024, minDelay: 1, maxDelay: 1 },
      timeout: { response: options.behaviourTimeout ?? 5_000, idle: options.behaviourTimeout ?? 5_000 },
      limits: { requestBodyBytes: options.requestBodyBytes ?? 0 },
    }),
  );
  const { url } = await listen(app);
  return { url, log, seen, closed };
}

const OUTCOMES: { name: string; behaviour: Behaviour | null; status: number }[] = [
  { name: 'success', behaviour: faults.respond(200, 'stored'), status: 200 },
  { name: 'failure status', behaviour: faults.status(503), status: 502 },
  { name: 'reset before headers', behaviour: faults.resetBeforeHeaders(), status: 502 },
  { name: 'response timeout', behaviour: faults.hang(), status: 502 },
  { name: 'refused connection', behaviour: null, status: 502 },
];

describe('after every outcome the app still has its request object', () => {
  for (const kind of ['buffered', 'streamed', 'chunked'] as const) {
    const size = kind === 'buffered' ? 512 : 64 * 1024;
    for (const outcome of OUTCOMES) {
      it(`${kind} upload, ${outcome.name}: morgan logs ${outcome.status} with the client address; req.socket, req.ip, req.headers intact`, async () => {
        const target = outcome.behaviour === null ? await refusedUrl() : (await upstream({ fallback: outcome.behaviour })).url;
        const app = await expressApp(target, { behaviourTimeout: 200 });
        const status = await upload(`${app.url}/api/upload`, size, kind);
        expect(status).toBe(outcome.status);
        const line = await app.log.next();
        expect(line).toMatch(new RegExp(`^(::ffff:)?127\\.0\\.0\\.1 - - \\[[^\\]]+\\] "POST /api/upload HTTP/1\\.1" ${outcome.status} `));
        await Promise.all(app.closed);
        expect(app.seen).toHaveLength(1);
        expect(app.seen[0]?.remoteAddress).toMatch(/127\.0\.0\.1$/);
        expect(app.seen[0]?.ip).toMatch(/127\.0\.0\.1$/);
        expect(app.seen[0]?.headers).toBe('object');
      });
    }
  }

  it('streamed upload over limits.requestBodyBytes: 413, and morgan still logs it', async () => {
    const { url: target } = await upstream({ fallback: faults.respond(200) });
    const app = await expressApp(target, { requestBodyBytes: 32 * 1024 });
    expect(await upload(`${app.url}/api/upload`, 64 * 1024, 'chunked')).toBe(413);
    expect(await app.log.next()).toMatch(/^(::ffff:)?127\.0\.0\.1 .* 413 /);
    await Promise.all(app.closed);
    expect(app.seen[0]?.ip).toMatch(/127\.0\.0\.1$/);
  });

  it('a client that leaves mid-response: the app keeps its request object and keeps serving', async () => {
    const release: (() => void)[] = [];
    const { url: target } = await upstream({
      fallback: ({ res, index }) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        if (index > 0) {
          res.end('whole');
          return;
        }
        res.write('first part');
        release.push(() => res.end());
      },
    });
    const app = await expressApp(target);
    expect(await upload(`${app.url}/api/upload`, 64 * 1024, 'streamed', true)).toBeNull();
    await Promise.all(app.closed);
    release.forEach((end) => end());
    expect(app.seen[0]?.ip).toMatch(/127\.0\.0\.1$/);
    expect(await upload(`${app.url}/api/again`, 10, 'buffered')).toBe(200);
  });
});

describe('Fastify', () => {
  it('request.ip is still the client address after a streamed upload', async () => {
    const { url: target } = await upstream({ fallback: faults.respond(200) });
    const app = Fastify();
    const ips: (string | undefined)[] = [];
    const responded = new Promise<void>((resolve) => {
      app.addHook('onResponse', (request, _reply, done) => {
        ips.push(request.ip);
        done();
        resolve();
      });
    });
    await app.register(fastifyProxy, { prefix: '/api', target, registry: testRegistry(), retry: false });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    onCleanup(() => app.close());
    expect(await upload(`${url}/api/upload`, 64 * 1024, 'streamed')).toBe(200);
    await responded;
    expect(ips).toEqual(['127.0.0.1']);
  });
});

describe('Koa', () => {
  it.each([
    { name: 'success', behaviour: faults.respond(200, 'fine'), status: 200 },
    { name: 'a failure status', behaviour: faults.status(503), status: 502 },
  ])('$name: middleware awaiting next() sees the status the client gets, on ctx before Koa sends it (as for any Koa response)', async ({ behaviour, status }) => {
    const { url: target } = await upstream({ fallback: behaviour });
    const app = new Koa();
    const seen: { status: number; headersSent: boolean }[] = [];
    const logged = new Promise<void>((resolve) => {
      app.use(async (ctx, next) => {
        await next();
        seen.push({ status: ctx.status, headersSent: ctx.res.headersSent });
        resolve();
      });
    });
    const middleware = koaProxy({ target, registry: testRegistry(), retry: false });
    onCleanup(() => middleware.close());
    app.use(mount('/api', middleware));
    const { url } = await listen(app.callback() as RequestListener);

    expect((await upload(`${url}/api/x`, 10, 'buffered'))).toBe(status);
    await logged;
    expect(seen).toStrictEqual([{ status, headersSent: false }]);
  });
});

describe('Fastify plugin options', () => {
  it('a bad option is an error from ready(), not an uncaught exception', async () => {
    const app = Fastify();
    onCleanup(() => app.close());
    void app.register(fastifyProxy, { prefix: '/api', target: 'not a url' });
    await expect(app.ready()).rejects.toThrow('Expected `target` to be an absolute http: or https: URL');
  });
});

describe('the request id joins the app’s logs', () => {
  it('pino-http with genReqId: requestId logs the id the upstream received and the error body echoes', async () => {
    const up = await upstream();
    up.enqueue(faults.respond(200), faults.status(503));
    const lines = logLines();
    const app = express();
    app.use(pinoHttp({ logger: pino(lines.stream), genReqId: (req) => requestId(req) }));
    app.use('/api', proxy({ target: up.url, retry: false }));
    const { url } = await listen(app);

    const ok = await fetch(`${url}/api/a`);
    const okLog = JSON.parse(await lines.next()) as { req: { id: string }; res: { statusCode: number } };
    const failed = await fetch(`${url}/api/b`);
    const failedLog = JSON.parse(await lines.next()) as { req: { id: string }; res: { statusCode: number } };
    const problem = (await failed.json()) as { requestId: string };

    expect(ok.status).toBe(200);
    expect(okLog.res.statusCode).toBe(200);
    expect(okLog.req.id).toBe(up.requests[0]?.headers['x-request-id']);
    expect(failedLog.res.statusCode).toBe(502);
    expect(failedLog.req.id).toBe(up.requests[1]?.headers['x-request-id']);
    expect(problem.requestId).toBe(failedLog.req.id);
  });

  it('a client’s own id is kept; without one, an id the app set on req.id is used', async () => {
    const up = await upstream();
    const app = express();
    app.use((req, _res, next) => {
      Object.assign(req, { id: 41 });
      next();
    });
    app.use('/api', proxy({ target: up.url }));
    const { url } = await listen(app);

    await fetch(`${url}/api/a`, { headers: { 'x-request-id': 'from-client' } });
    await fetch(`${url}/api/b`);

    expect(up.requests.map((r) => r.headers['x-request-id'])).toStrictEqual(['from-client', '41']);
  });
});

describe('req.url is the app’s again once the hooks have run', () => {
  const hooks = (seen: string[]): Pick<ProxyOptions, 'pathRewrite' | 'headers' | 'transformResponse'> => ({
    pathRewrite: (path, req) => (seen.push(req.url ?? ''), path),
    headers: {
      request: async (headers, req) => (await Promise.resolve(), seen.push(req.url ?? ''), headers),
      response: (headers, { req }) => (seen.push(req.url ?? ''), headers),
    },
    transformResponse: { match: () => true, transform: (body, { req }) => (seen.push(req.url ?? ''), body) },
  });

  it('Express: the middleware after the response reads its own stripped req.url, the hooks read the client’s', async () => {
    const up = await upstream({ fallback: faults.respond(200, 'ok') });
    const seen: string[] = [];
    const after: string[] = [];
    const app = express();
    app.use('/api', (req, res, next) => {
      res.once('finish', () => after.push(req.url));
      next();
    });
    app.use('/api', proxy({ target: up.url, ...hooks(seen) }));
    const { url } = await listen(app);

    const response = await fetch(`${url}/api/a?b=1`);
    await response.text();

    expect(seen).toStrictEqual(['/api/a?b=1', '/api/a?b=1', '/api/a?b=1', '/api/a?b=1']);
    expect(after).toStrictEqual(['/a?b=1']);
  });

  it('Koa: the middleware awaiting the proxy under koa-mount reads its own stripped req.url', async () => {
    const up = await upstream({ fallback: faults.respond(200, 'ok') });
    const seen: string[] = [];
    const after: string[] = [];
    const app = new Koa();
    const middleware = koaProxy({ target: up.url, registry: testRegistry(), ...hooks(seen) });
    onCleanup(() => middleware.close());
    const api = new Koa();
    api.use(async (ctx, next) => {
      await next();
      after.push(ctx.req.url ?? '');
    });
    api.use(middleware);
    app.use(mount('/api', api));
    const { url } = await listen(app.callback() as RequestListener);

    const response = await fetch(`${url}/api/a?b=1`);
    await response.text();

    expect(seen).toStrictEqual(['/api/a?b=1', '/api/a?b=1', '/api/a?b=1', '/api/a?b=1']);
    expect(after).toStrictEqual(['/a?b=1']);
  });
});

// Shared plumbing for the ecosystem integration suite (issue 10): a recording
// upstream on loopback, clients for every scenario, a watch on the process for
// crashes, and event-driven waits for log lines. Nothing here sleeps: every wait
// resolves on an event, and `within` only turns a wait that never ends into a
// readable failure instead of a test timeout.

import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, request as httpRequest, type ClientRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { brotliDecompressSync, createBrotliDecompress, createGunzip, createInflate, gunzipSync, inflateSync, constants as zlib } from 'node:zlib';
import { afterEach, beforeEach, expect } from 'vitest';
import { onCleanup } from '../support.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** The two events of the event-stream scenario. */
export const FIRST_EVENT = 'id: 1\ndata: first\n\n';
export const SECOND_EVENT = 'id: 2\ndata: second\n\n';

/** How long a wait that should end at once may take before the test reports it as never ending. */
export const NEVER_MS = 3_000;

// ---------------------------------------------------------------------------
// The process must survive: uncaught exceptions and unhandled rejections.

export interface ProcessWatch {
  readonly errors: unknown[];
  /** Rejects as soon as the process sees an uncaught exception or unhandled rejection. */
  readonly crashed: Promise<never>;
}

let current: ProcessWatch | null = null;

/**
 * Counts `uncaughtException` and `unhandledRejection` during each test of the
 * file (listeners installed in beforeEach, removed in afterEach), and fails
 * the test when there was any.
 */
export function watchProcess(): { readonly errors: () => readonly unknown[] } {
  let onException: ((error: unknown) => void) | null = null;
  let onRejection: ((reason: unknown) => void) | null = null;
  beforeEach(() => {
    const errors: unknown[] = [];
    let fail!: (error: unknown) => void;
    const crashed = new Promise<never>((_resolve, reject) => {
      fail = reject;
    });
    crashed.catch(() => undefined);
    onException = (error) => {
      errors.push(error);
      fail(error);
    };
    onRejection = (reason) => {
      errors.push(reason);
      fail(reason);
    };
    process.on('uncaughtException', onException);
    process.on('unhandledRejection', onRejection);
    current = { errors, crashed };
  });
  afterEach(() => {
    if (onException !== null) process.off('uncaughtException', onException);
    if (onRejection !== null) process.off('unhandledRejection', onRejection);
    const errors = current?.errors ?? [];
    current = null;
    expect(errors.map(describeError).join('\n\n'), 'uncaughtException / unhandledRejection during the test').toBe('');
  });
  return { errors: () => current?.errors ?? [] };
}

export function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}\n${error.stack?.split('\n').slice(1, 6).join('\n') ?? ''}`;
  return String(error);
}

export function processErrors(): readonly unknown[] {
  return current?.errors ?? [];
}

/**
 * Waits for `promise`; rejects at once if the process crashes meanwhile, and
 * with a message naming `what` if nothing happened after NEVER_MS.
 */
export function within<T>(promise: Promise<T>, what: string, ms = NEVER_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`never happened within ${ms} ms: ${what}`)), ms);
  });
  const crashed = current?.crashed ?? new Promise<never>(() => undefined);
  const crash = crashed.catch((error: unknown) => {
    throw new Error(`the process crashed while waiting for: ${what}\n${describeError(error)}`);
  });
  return Promise.race([promise, guard, crash]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------
// Event-driven records: log lines, "request still intact" snapshots.

/** An append-only list whose waits resolve when a matching item is pushed (or already was). */
export class Recorder<T> {
  readonly items: T[] = [];
  readonly #waiting: { match: (item: T) => boolean; resolve: (item: T) => void }[] = [];

  push(item: T): void {
    this.items.push(item);
    for (const waiter of [...this.#waiting]) {
      if (waiter.match(item)) {
        this.#waiting.splice(this.#waiting.indexOf(waiter), 1);
        waiter.resolve(item);
      }
    }
  }

  /** The first item (already pushed or still to come) that matches; fails the test after NEVER_MS with `what`. */
  next(match: (item: T) => boolean, what: string): Promise<T> {
    const found = this.items.find(match);
    if (found !== undefined) return Promise.resolve(found);
    return within(new Promise<T>((resolve) => this.#waiting.push({ match, resolve })), what);
  }
}

/** A writable-ish stream for loggers (morgan `stream`, pino destination) that records whole lines. */
export class LogLines extends Recorder<string> {
  readonly stream = {
    write: (chunk: string | Buffer): boolean => {
      for (const line of String(chunk).split('\n')) if (line.trim() !== '') this.push(line);
      return true;
    },
  };
}

// eslint-disable-next-line no-control-regex -- matching terminal colour codes is the point
const ANSI = /\x1b\[[0-9;]*m/g;

export function stripAnsi(text: string): string {
  return text.replace(ANSI, '');
}

export interface IntactRecord {
  readonly url: string;
  readonly event: 'finish' | 'close';
  readonly remoteAddress: string | undefined;
  readonly ip: string | undefined;
  readonly headersType: string;
  readonly statusCode: number;
  readonly error?: string;
}

export const LOOPBACK = /^(127\.0\.0\.1|::ffff:127\.0\.0\.1)$/;

/** Asserts what a middleware mounted before the proxy saw of the request once the response was over. */
export async function expectIntact(records: Recorder<IntactRecord>, url: string, status: number | null): Promise<void> {
  const closed = await records.next((r) => r.url === url && r.event === 'close', `the 'close' snapshot of ${url}`);
  const where = `what a middleware before the proxy saw of ${url} once the response closed: ${JSON.stringify(closed)}`;
  expect(closed.error, where).toBeUndefined();
  expect(closed.remoteAddress ?? '(none)', where).toMatch(LOOPBACK);
  expect(closed.ip ?? '(none)', where).toMatch(LOOPBACK);
  expect(closed.headersType, where).toBe('object');
  if (status !== null) expect(closed.statusCode, where).toBe(status);
}

// ---------------------------------------------------------------------------
// Deterministic bodies.

/** A deterministic body of `size` bytes in 64 KiB chunks (the tail differs from the head, so a reorder shows). */
export function* pattern(size: number, chunkSize = 64 * KiB): Generator<Buffer> {
  let index = 0;
  for (let sent = 0; sent < size; sent += chunkSize) {
    const length = Math.min(chunkSize, size - sent);
    const chunk = Buffer.alloc(length, `chunk-${index}:abcdefghijklmnopqrstuvwxyz0123456789|`);
    index += 1;
    yield chunk;
  }
}

export function sha256(data: Buffer | Iterable<Buffer>): string {
  const hash = createHash('sha256');
  if (Buffer.isBuffer(data)) hash.update(data);
  else for (const chunk of data) hash.update(chunk);
  return hash.digest('hex');
}

export function patternSha256(size: number, chunkSize?: number): string {
  return sha256(pattern(size, chunkSize));
}

// ---------------------------------------------------------------------------
// The upstream: a plain node:http server that records what it received.

export interface Received {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly bytes: number;
  readonly sha256: string;
  /** The first 256 KiB of the body. */
  readonly body: Buffer;
}

/** An open upstream response the test drives: an event stream or a stalled download. */
export interface OpenResponse {
  readonly url: string;
  readonly res: ServerResponse;
  /** Resolves when the upstream's response closed (finished or cut by the proxy). */
  readonly closed: Promise<void>;
  /** True when the response closed before it was ended, i.e. the proxy cancelled it. */
  cancelled(): boolean;
  write(data: string | Buffer): void;
  end(data?: string | Buffer): void;
}

/** A request as soon as its head arrived, before its body. */
export interface Arrived {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  /** Resolves when the request stream closed; `aborted` tells whether it ended before its body did. */
  readonly closed: Promise<{ readonly aborted: boolean; readonly bytes: number }>;
}

export interface TestUpstream {
  readonly url: string;
  /** Requests whose head arrived. */
  readonly arrived: Recorder<Arrived>;
  /** Requests whose body arrived whole. */
  readonly received: Recorder<Received>;
  readonly open: Recorder<OpenResponse>;
}

/**
 * Routes (after the proxy stripped `/api`):
 * - `GET /ping`: 200 `pong`.
 * - `* /upload…`: reads the body, answers 200 JSON `{ bytes, sha256, contentType, contentLength, transferEncoding }`.
 * - `GET /download?size=N&type=T`: `N` pattern bytes with Content-Length, an `x-upstream` header, a `Set-Cookie`, `Vary: Accept-Encoding`.
 * - `GET /events`: `text/event-stream` headers flushed at once, then whatever the test writes through `open`.
 * - `GET /stall`: headers announcing 8 MiB, 64 KiB of them, then whatever the test does through `open`.
 * - `* /fail`: 503.
 */
export async function startUpstream(): Promise<TestUpstream> {
  const received = new Recorder<Received>();
  const open = new Recorder<OpenResponse>();
  const arrived = new Recorder<Arrived>();
  const server = createServer((req, res) => {
    const hash = createHash('sha256');
    const kept: Buffer[] = [];
    let bytes = 0;
    arrived.push({
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      closed: new Promise((resolve) => req.once('close', () => resolve({ aborted: !req.complete, bytes }))),
    });
    req.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      if (bytes < 256 * KiB) kept.push(chunk);
      bytes += chunk.length;
    });
    req.on('error', () => undefined);
    req.once('end', () => {
      const record: Received = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        bytes,
        sha256: hash.digest('hex'),
        body: Buffer.concat(kept).subarray(0, 256 * KiB),
      };
      received.push(record);
      route(req, res, record, open);
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  onCleanup(async () => {
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  });
  return { url: `http://127.0.0.1:${port}`, arrived, received, open };
}

function openResponse(req: IncomingMessage, res: ServerResponse): OpenResponse {
  let ended = false;
  const closed = new Promise<void>((resolve) => res.once('close', () => resolve()));
  return {
    url: req.url ?? '',
    res,
    closed,
    cancelled: () => !ended,
    write: (data) => {
      res.write(data);
    },
    end: (data) => {
      ended = true;
      if (data === undefined) res.end();
      else res.end(data);
    },
  };
}

function route(req: IncomingMessage, res: ServerResponse, record: Received, open: Recorder<OpenResponse>): void {
  const url = new URL(req.url ?? '/', 'http://upstream');
  const path = url.pathname;
  if (path === '/ping') {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 4, 'x-upstream': 'ping' });
    res.end('pong');
    return;
  }
  if (path.startsWith('/upload')) {
    const body = JSON.stringify({
      bytes: record.bytes,
      sha256: record.sha256,
      contentType: req.headers['content-type'] ?? null,
      contentLength: req.headers['content-length'] ?? null,
      transferEncoding: req.headers['transfer-encoding'] ?? null,
    });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-upstream': 'upload' });
    res.end(body);
    return;
  }
  if (path === '/download') {
    const size = Number(url.searchParams.get('size') ?? 2 * MiB);
    res.writeHead(200, {
      'content-type': url.searchParams.get('type') ?? 'application/octet-stream',
      'content-length': size,
      'x-upstream': 'download',
      'set-cookie': ['up=1; Path=/'],
      vary: 'Accept-Encoding',
    });
    void pipeline(Readable.from(pattern(size)), res).catch(() => undefined);
    return;
  }
  if (path === '/events') {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-upstream': 'events' });
    res.flushHeaders();
    // `eager`: the first event goes with the headers, without waiting for the client.
    if (url.searchParams.has('eager')) res.write(FIRST_EVENT);
    open.push(openResponse(req, res));
    return;
  }
  if (path === '/stall') {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 8 * MiB, 'x-upstream': 'stall' });
    const response = openResponse(req, res);
    res.write(Buffer.alloc(64 * KiB, 's'), () => open.push(response));
    return;
  }
  if (path === '/fail') {
    res.writeHead(503, { 'content-type': 'text/plain', 'content-length': 11 });
    res.end('unavailable');
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain', 'content-length': 9 });
  res.end('not found');
}

// ---------------------------------------------------------------------------
// Clients: node:http, one connection per request (agent: false).

export interface Reply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /** The body as decoded from its Content-Encoding. */
  readonly body: Buffer;
  /** Body bytes as they came over the wire. */
  readonly wireBytes: number;
}

export interface SendOptions {
  readonly method?: string;
  readonly headers?: Record<string, string | number | string[]>;
  /** A Buffer (sent with Content-Length unless `chunked`), or a generator streamed with backpressure. */
  readonly body?: Buffer | Iterable<Buffer>;
  /** Send without Content-Length: Transfer-Encoding: chunked. */
  readonly chunked?: boolean;
  /** A failure guard: the request is destroyed and the test fails if no complete response came within this many ms. */
  readonly guardMs?: number;
}

function decode(encoding: string | undefined, body: Buffer): Buffer {
  if (encoding === undefined || encoding === 'identity') return body;
  if (encoding === 'gzip') return gunzipSync(body);
  if (encoding === 'deflate') return inflateSync(body);
  if (encoding === 'br') return brotliDecompressSync(body);
  throw new Error(`unexpected content-encoding ${encoding}`);
}

export function send(url: string, options: SendOptions = {}): Promise<Reply> {
  let req: ClientRequest | null = null;
  const what = `a complete response to ${options.method ?? 'GET'} ${url}`;
  const reply = new Promise<Reply>((resolve, reject) => {
    const headers: Record<string, string | number | string[]> = { ...options.headers };
    const body = options.body;
    if (Buffer.isBuffer(body) && options.chunked !== true) headers['content-length'] = body.length;
    req = httpRequest(url, { method: options.method ?? 'GET', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.once('error', reject);
      res.once('end', () => {
        if (!res.complete) {
          reject(new Error(`response to ${url} was cut off`));
          return;
        }
        const wire = Buffer.concat(chunks);
        try {
          const encoding = res.headers['content-encoding'];
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: decode(encoding, wire), wireBytes: wire.length });
        } catch (error) {
          reject(error instanceof Error ? error : new Error(String(error)));
        }
      });
    });
    const client = req;
    client.once('error', reject);
    if (body === undefined) client.end();
    else if (Buffer.isBuffer(body)) {
      if (options.chunked === true) {
        // Two writes before end: Node sends Transfer-Encoding: chunked.
        client.write(body.subarray(0, body.length >> 1));
        client.end(body.subarray(body.length >> 1));
      } else client.end(body);
    } else void pipeline(Readable.from(body), client).catch(reject);
  });
  return within(reply, what, options.guardMs ?? 2 * NEVER_MS).catch((error: unknown) => {
    req?.destroy();
    throw error;
  });
}

export function json(reply: Reply): unknown {
  return JSON.parse(reply.body.toString('utf8'));
}

/**
 * The remote address of a request's socket. Node types `req.socket` as always
 * set; the suite checks precisely that it still is once the response is over.
 */
export function remoteAddressOf(req: IncomingMessage): string | undefined {
  const socket = req.socket as Socket | null;
  return socket?.remoteAddress;
}

function decoder(encoding: string | undefined): Transform | null {
  if (encoding === 'gzip') return createGunzip({ finishFlush: zlib.Z_SYNC_FLUSH });
  if (encoding === 'deflate') return createInflate({ finishFlush: zlib.Z_SYNC_FLUSH });
  if (encoding === 'br') return createBrotliDecompress();
  return null;
}

export interface EventStreamResult {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
}

/**
 * The event-stream scenario. The upstream sends its headers at once
 * (flushHeaders) and its first event only once the client has the response
 * headers; the second event and the end only once the client has decoded the
 * first event. Any wait that never ends fails the test with its name.
 */
export async function eventStream(
  gatewayUrl: string,
  upstream: TestUpstream,
  headers: Record<string, string> = {},
  options: { eager?: boolean } = {},
): Promise<EventStreamResult> {
  const eager = options.eager === true;
  const path = eager ? '/events?eager=1' : '/events';
  const client = httpRequest(`${gatewayUrl}/api${path}`, { headers: { accept: 'text/event-stream', ...headers }, agent: false });
  onCleanup(() => client.destroy());
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    client.once('response', resolve);
    client.once('error', reject);
  });
  client.end();
  const stream = await upstream.open.next((o) => o.url === path, `the upstream receiving GET ${path}`);
  const res = await within(response, 'the client receiving the event-stream response headers (the upstream flushed them)');
  const decoded = decoder(res.headers['content-encoding']);
  const source: Readable = decoded === null ? res : res.pipe(decoded);
  let text = '';
  const seen = new Recorder<string>();
  source.setEncoding('utf8');
  source.on('data', (chunk: string) => {
    text += chunk;
    seen.push(text);
  });
  const ended = new Promise<void>((resolve, reject) => {
    source.once('end', () => resolve());
    source.once('error', reject);
    res.once('aborted', () => reject(new Error('event stream cut off')));
  });
  // Awaited below; a test that already failed must not leave it unhandled.
  ended.catch(() => undefined);
  if (!eager) stream.write(FIRST_EVENT);
  await seen.next(
    (t) => t.includes('data: first\n\n'),
    `the client receiving the first event while the stream is open (content-encoding: ${res.headers['content-encoding'] ?? 'none'})`,
  );
  stream.write(SECOND_EVENT);
  stream.end();
  await within(ended, 'the end of the event stream');
  return { status: res.statusCode ?? 0, headers: res.headers, text };
}

/**
 * The client-abort scenario: GET /api/stall, destroy the connection on the
 * first body byte, and wait for the proxy to cancel the upstream response.
 */
export async function abortMidResponse(gatewayUrl: string, upstream: TestUpstream): Promise<{ status: number; headers: IncomingHttpHeaders }> {
  const client = httpRequest(`${gatewayUrl}/api/stall`, { agent: false });
  client.on('error', () => undefined);
  const head = new Promise<{ status: number; headers: IncomingHttpHeaders }>((resolve, reject) => {
    client.once('response', (res) => {
      res.on('error', () => undefined);
      res.once('data', () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers });
        client.destroy();
      });
    });
    client.once('error', reject);
  });
  client.end();
  const result = await within(head, 'the first body byte of GET /api/stall');
  const stall = await upstream.open.next((o) => o.url === '/stall', 'the upstream serving /stall');
  await within(stall.closed, 'the proxy cancelling the upstream response after the client left');
  expect(stall.cancelled()).toBe(true);
  return result;
}

/**
 * The upstream-cut scenario: GET /api/stall; once the client has the first
 * body byte, the upstream's connection is destroyed mid-body. Resolves with
 * the head the client got and how its response ended (cut: it never ended).
 */
export async function upstreamCutsMidResponse(gatewayUrl: string, upstream: TestUpstream): Promise<{ status: number; headers: IncomingHttpHeaders; cut: boolean }> {
  const client = httpRequest(`${gatewayUrl}/api/stall`, { agent: false });
  client.on('error', () => undefined);
  onCleanup(() => client.destroy());
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    client.once('response', resolve);
    client.once('error', reject);
  });
  client.end();
  const res = await within(response, 'the response head of GET /api/stall');
  res.on('error', () => undefined);
  const ended = new Promise<boolean>((resolve) => {
    res.once('end', () => resolve(!res.complete));
    res.once('aborted', () => resolve(true));
    res.once('close', () => resolve(!res.complete));
  });
  await within(once(res, 'data'), 'the first body byte of GET /api/stall');
  res.resume();
  const stall = await upstream.open.next((o) => o.url === '/stall', 'the upstream serving /stall');
  stall.res.destroy();
  const cut = await within(ended, 'the end of the client response after the upstream cut it');
  return { status: res.statusCode ?? 0, headers: res.headers, cut };
}

/**
 * The client-abort-during-upload scenario: a POST announcing 3 MiB sends its
 * first 256 KiB, and the client cuts the connection once the upstream has the
 * request head. Resolves with how the upstream's request ended.
 */
export async function abortMidUpload(gatewayUrl: string, upstream: TestUpstream): Promise<{ readonly aborted: boolean; readonly bytes: number }> {
  const client = httpRequest(`${gatewayUrl}/api/upload/aborted`, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'content-length': 3 * MiB },
    agent: false,
  });
  client.on('error', () => undefined);
  client.on('response', (res) => res.resume());
  // Past limits.requestBufferBytes (1 MiB): the upstream is called while the rest is still coming.
  client.write(Buffer.alloc(MiB + 256 * KiB, 'u'));
  const arrived = await upstream.arrived.next((a) => a.url === '/upload/aborted', 'the upstream receiving the head of the upload');
  client.destroy();
  return within(arrived.closed, 'the proxy cancelling the upstream request after the client left mid-upload');
}

/** The follow-up request every scenario ends with: the app still serves. */
export async function expectStillServing(gatewayUrl: string): Promise<void> {
  const reply = await within(send(`${gatewayUrl}/api/ping?after=1`), 'the follow-up request');
  expect(reply.status).toBe(200);
  expect(reply.body.toString()).toBe('pong');
  expect(processErrors().map(describeError).join('\n\n'), 'uncaughtException / unhandledRejection so far').toBe('');
}

/** A multipart/form-data body with one file field `f`. */
export function multipartBody(file: Buffer, boundary = 'integration-boundary-7MA4YWxkTrZu0gW'): { body: Buffer; contentType: string } {
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="f"; filename="blob.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return { body: Buffer.concat([head, file, tail]), contentType: `multipart/form-data; boundary=${boundary}` };
}

/** The problem+json body of a 502. */
export interface Problem {
  readonly type: string;
  readonly status: number;
  readonly code: string;
  readonly attempts: number;
  readonly requestId: string;
}

// The seam between the core and a framework: the response the core writes to.
// On node:http and Express it is Node's own ServerResponse, untouched. Fastify
// and Koa have a pipeline of their own (onSend hooks, compression, request
// logs) that only sees a response handed to the framework, so their adapters
// give the core a FrameworkResponse instead: it takes the same calls and hands
// the head and the body (a stream with backpressure, or a whole buffer) to the
// framework's reply. Policy (head hold, retries, the contract) stays in the core.

import { validateHeaderName, validateHeaderValue, type OutgoingHttpHeader, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { isClientAborted } from '../contract/errors.js';

/** The part of Node's ServerResponse the core uses, with its meaning. */
export interface ClientResponse {
  /** The head is committed: a failure now can only cut the connection. */
  readonly headersSent: boolean;
  readonly destroyed: boolean;
  readonly writableEnded: boolean;
  readonly writableFinished: boolean;
  statusCode: number;
  /** Why the response was cut, for loggers that read it (pino-http). */
  err?: unknown;
  getHeader(name: string): OutgoingHttpHeader | undefined;
  setHeader(name: string, value: OutgoingHttpHeader): unknown;
  removeHeader(name: string): void;
  writeHead(statusCode: number, headers: OutgoingHttpHeaders): unknown;
  writeHead(statusCode: number, statusMessage: string, headers: OutgoingHttpHeaders): unknown;
  flushHeaders(): void;
  write(chunk: Buffer): boolean;
  end(chunk?: Buffer | string): unknown;
  destroy(): unknown;
  writeContinue(): void;
  on(event: 'drain' | 'close', listener: () => void): unknown;
  once(event: 'drain' | 'close', listener: () => void): unknown;
  off(event: 'drain' | 'close', listener: () => void): unknown;
}

/** The error a cut response is logged with (pino-http's `res.err`, Fastify's stream error, Koa's `'error'` event). */
export class ResponseCutError extends Error {
  readonly code = 'ERR_RESILIENT_PROXY_RESPONSE_CUT';
  constructor(cause: unknown) {
    super('The upstream response failed after its head was sent: the client connection was closed', { cause });
  }
}

/**
 * Ends a response whose head is out: only a cut connection tells the client
 * the body is incomplete. A cut the client did not cause is marked with
 * `res.err`, so a logger tells it from a client that left.
 */
export function cutResponse(res: ClientResponse, cause: unknown): void {
  if (res.destroyed) return;
  if (!isClientAborted(cause)) res.err ??= new ResponseCutError(cause);
  res.destroy();
}

/** What an adapter does with its framework's reply; translation only. */
export interface FrameworkReply {
  readonly raw: ServerResponse;
  getHeader(name: string): OutgoingHttpHeader | undefined;
  /** Replaces a header on the framework's reply. */
  setHeader(name: string, value: OutgoingHttpHeader): void;
  removeHeader(name: string): void;
  /** Sets the status on the framework's reply (throws on one the framework refuses). */
  status(statusCode: number, statusMessage: string | undefined): void;
  /** Hands the body to the framework: a stream, a whole body, or none. `flush`: the head must not wait for the body. */
  send(body: Readable | Buffer | null, flush: boolean): void;
}

/** Room in the body stream before the core pauses the upstream: one undici chunk. */
const BODY_HIGH_WATER_MARK = 64 * 1024;

/** The core's response on a framework: see the file comment. */
export class FrameworkResponse implements ClientResponse {
  err?: unknown;
  readonly #reply: FrameworkReply;
  #committed = false;
  #ended = false;
  #cut = false;
  #body: Readable | null = null;
  /** Chunks written in this tick before the body stream exists (see write()). */
  #early: Buffer[] | null = null;
  /** The head must go out on the first read, not with the first byte. */
  #flush = false;
  #waitingForRead = false;
  readonly #drainListeners = new Set<() => void>();

  constructor(reply: FrameworkReply) {
    this.#reply = reply;
  }

  get headersSent(): boolean {
    return this.#committed || this.#reply.raw.headersSent;
  }

  get destroyed(): boolean {
    return this.#cut || this.#reply.raw.destroyed;
  }

  get writableEnded(): boolean {
    return this.#ended || this.#reply.raw.writableEnded;
  }

  get writableFinished(): boolean {
    // The framework may finish the response without the body (an onSend hook
    // failed and it sent an error instead): then the proxy's response was not
    // delivered, and the upstream is to be cancelled, not left paused.
    return this.#reply.raw.writableFinished && this.#ended && (this.#body === null || this.#body.readableEnded);
  }

  get statusCode(): number {
    return this.#reply.raw.statusCode;
  }

  set statusCode(value: number) {
    this.#reply.raw.statusCode = value;
  }

  getHeader(name: string): OutgoingHttpHeader | undefined {
    return this.#reply.getHeader(name);
  }

  setHeader(name: string, value: OutgoingHttpHeader): this {
    this.#reply.setHeader(name, value);
    return this;
  }

  removeHeader(name: string): void {
    this.#reply.removeHeader(name);
  }

  writeHead(statusCode: number, messageOrHeaders: string | OutgoingHttpHeaders, maybeHeaders?: OutgoingHttpHeaders): this {
    const message = typeof messageOrHeaders === 'string' ? messageOrHeaders : undefined;
    const headers = typeof messageOrHeaders === 'string' ? (maybeHeaders ?? {}) : messageOrHeaders;
    // What Node's writeHead would refuse, refused here, while the contract can still answer.
    if (!Number.isInteger(statusCode) || statusCode < 100 || statusCode > 999) throw new RangeError(`Invalid status code: ${statusCode}`);
    for (const [name, value] of Object.entries(headers)) {
      validateHeaderName(name);
      if (value !== undefined) for (const item of Array.isArray(value) ? value : [value]) validateHeaderValue(name, String(item));
    }
    this.#reply.status(statusCode, message);
    for (const [name, value] of Object.entries(headers)) if (value !== undefined) this.#reply.setHeader(name, value);
    this.#committed = true;
    return this;
  }

  flushHeaders(): void {
    this.#flush = true;
    this.#stream();
  }

  write(chunk: Buffer): boolean {
    if (this.#cut || this.#ended) return false;
    if (this.#body === null && !this.#flush) {
      // Most bodies end in the packet they start in: held to the end of the
      // tick, a whole one goes to the framework as one buffer, which costs it
      // far less than a stream.
      if (this.#early === null) {
        this.#early = [];
        queueMicrotask(this.#streamEarly);
      }
      this.#early.push(chunk);
      return true;
    }
    const room = this.#stream().push(chunk);
    if (!room) this.#waitingForRead = true;
    return room;
  }

  end(chunk?: Buffer | string): this {
    if (this.#cut || this.#ended) return this;
    this.#ended = true;
    let body = chunk === undefined ? null : Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    if (this.#body === null) {
      const early = this.#early;
      this.#early = null;
      if (early !== null) body = Buffer.concat(body === null ? early : [...early, body]);
      this.#reply.send(body, this.#flush);
      return this;
    }
    if (body !== null) this.#body.push(body);
    this.#body.push(null);
    return this;
  }

  destroy(): this {
    if (this.#cut) return this;
    this.#cut = true;
    const { raw } = this.#reply;
    // A cut the client did not cause errors the body stream (Fastify logs it,
    // Koa emits 'error') and the connection (on-finished, so koa-logger, says
    // `-x-`); a client that left closes them quietly.
    const reason = raw.destroyed || this.err === undefined ? undefined : (this.err as Error);
    this.#body?.destroy(reason);
    raw.destroy(reason);
    return this;
  }

  writeContinue(): void {
    // Node may have said `100 Continue` already, when the server has no 'checkContinue' listener.
    if ((this.#reply.raw as ServerResponse & { _sent100?: boolean })._sent100 !== true) this.#reply.raw.writeContinue();
  }

  on(event: 'drain' | 'close', listener: () => void): this {
    if (event === 'drain') this.#drainListeners.add(listener);
    else this.#reply.raw.on(event, listener);
    return this;
  }

  once(event: 'drain' | 'close', listener: () => void): this {
    if (event === 'drain') {
      const once = (): void => {
        this.#drainListeners.delete(once);
        listener();
      };
      this.#drainListeners.add(once);
    } else this.#reply.raw.once(event, listener);
    return this;
  }

  off(event: 'drain' | 'close', listener: () => void): this {
    if (event === 'drain') this.#drainListeners.delete(listener);
    else this.#reply.raw.off(event, listener);
    return this;
  }

  /** The tick ended without the body's end: what was written goes into a stream. */
  readonly #streamEarly = (): void => {
    if (this.#early === null || this.#cut) return;
    this.#stream();
  };

  /** The body stream, handed to the framework on first use. */
  #stream(): Readable {
    if (this.#body !== null) return this.#body;
    const body = new Readable({ highWaterMark: BODY_HIGH_WATER_MARK, read: () => this.#onRead() });
    this.#body = body;
    const early = this.#early;
    this.#early = null;
    let room = true;
    if (early !== null) for (const chunk of early) room = body.push(chunk);
    if (!room) this.#waitingForRead = true;
    // A framework that drops the body before its end (a compressor's error)
    // would leave the upstream paused for a read that never comes: the
    // client connection goes, and the core, told by its 'close', cancels.
    body.once('close', () => {
      const { raw } = this.#reply;
      if (!body.readableEnded && !raw.writableFinished) raw.destroy();
    });
    this.#reply.send(body, this.#flush);
    return body;
  }

  /** The framework reads: the head may go out now (it has set every header by then), and a paused upstream may resume. */
  #onRead(): void {
    const { raw } = this.#reply;
    if (this.#flush) {
      this.#flush = false;
      if (!raw.headersSent && !raw.destroyed) raw.flushHeaders();
    }
    if (this.#waitingForRead) {
      this.#waitingForRead = false;
      for (const listener of [...this.#drainListeners]) listener();
    }
  }
}

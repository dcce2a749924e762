// Decides what to send upstream as the request body: nothing, the bytes read
// first into memory (up to a bound, as nginx buffers request bodies, so a
// slow upload holds no upstream connection or capacity slot while it
// arrives), the client's stream past that bound, or — when a body parser
// (express.json() and friends) already read the stream — the bytes rebuilt
// from what it parsed. A consumed body that cannot be rebuilt is a
// configuration error, never a hang. A client that stops sending its body is
// timed out (`timeout.upload`).

import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { BodyNotReplayableError, ClientAbortedError, LimitExceededError, ProxyTimeoutError } from '../contract/errors.js';
import { mediaType, rebuildBody, type ParsedBody } from './parsed-body.js';

export interface RequestBody {
  readonly body: Buffer | ClientBody | null;
  /** Set when the body was rebuilt: the headers must describe the new bytes. */
  readonly rebuilt: boolean;
  /** Whether the same bytes can be sent again on a retry. */
  readonly replayable: boolean;
}

const NO_BODY: RequestBody = { body: null, rebuilt: false, replayable: true };

export function hasRequestBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * The client's request body as a stream the engine may destroy. undici
 * destroys the body stream it was given once the upstream exchange ends, and
 * destroying an `IncomingMessage` takes its socket with it (`req.socket`
 * becomes `null`, and loggers such as morgan then crash reading `req.ip`).
 * This stream reads the request with backpressure and, when destroyed,
 * only lets go of it: the request and its socket stay the app's.
 */
export class ClientBody extends Readable {
  readonly #req: IncomingMessage;
  /** `timeout.upload`: the longest wait for the client's next chunk (0 for none). */
  readonly #idle: number;
  #timer: NodeJS.Timeout | null = null;
  /**
   * Told of every chunk as it is read from the client, before anyone else
   * sees it (a 'data' listener added later could miss what the stream had
   * already buffered).
   */
  onProgress: ((chunk: Buffer) => void) | null = null;
  /** Bytes read from the client so far, those read before the upstream was called included. */
  received = 0;

  constructor(req: IncomingMessage, idle = 0) {
    super();
    this.#req = req;
    this.#idle = idle;
    // Paused first, so that adding the 'data' listener does not start the flow.
    req.pause();
    req.on('data', this.#onData);
    req.once('end', this.#onEnd);
    req.once('error', this.#onAbort);
    req.once('close', this.#onClose);
  }

  override _read(): void {
    this.#req.resume();
    this.#waitForClient();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#stopWaiting();
    const req = this.#req;
    req.off('data', this.#onData);
    req.off('end', this.#onEnd);
    req.off('error', this.#onAbort);
    req.off('close', this.#onClose);
    // What nobody will read is drained, as Node does for an unread body, so
    // the connection can serve its next request.
    if (!req.readableEnded && !req.destroyed) req.resume();
    callback(error);
  }

  readonly #onData = (chunk: Buffer): void => {
    this.received += chunk.length;
    this.onProgress?.(chunk);
    if (this.destroyed) return;
    if (this.push(chunk)) {
      this.#waitForClient();
      return;
    }
    // Paused for our reader, not for the client: nothing to time out.
    this.#req.pause();
    this.#stopWaiting();
  };

  readonly #onEnd = (): void => {
    this.#stopWaiting();
    this.push(null);
  };

  /** (Re)starts the upload timer: the proxy reads, and the client owes its next chunk. */
  #waitForClient(): void {
    if (this.#idle === 0 || this.#req.readableEnded) return;
    if (this.#timer !== null) {
      this.#timer.refresh();
      return;
    }
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.destroy(new ProxyTimeoutError('upload', this.#idle));
    }, this.#idle);
  }

  #stopWaiting(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  readonly #onAbort = (): void => {
    this.destroy(new ClientAbortedError());
  };

  readonly #onClose = (): void => {
    if (!this.#req.readableEnded) this.#onAbort();
  };
}

/** How the request body is read before the first attempt. */
export interface BodyPolicy {
  /** `retry.maxBodyBytes` when retries are on (bodies up to it can be re-sent), else `null`. */
  readonly replayLimit: number | null;
  /** `limits.requestBufferBytes`: what is read into memory before the upstream is called; 0 streams at once. */
  readonly bufferBytes: number;
  /** `limits.requestBodyBytes` (0 for none), checked while the body is read. */
  readonly maxBytes: number;
  /** `timeout.upload`, in ms (0 for none). */
  readonly idle: number;
}

/** Reads `stream` until it ends or holds more than `limit` bytes. */
function readUpTo(stream: ClientBody, limit: number, maxBytes: number): Promise<{ chunks: Buffer[]; ended: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const stop = (): void => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      total += chunk.length;
      if (maxBytes > 0 && total > maxBytes) {
        stop();
        stream.destroy();
        reject(new LimitExceededError('request', maxBytes));
      } else if (total > limit) {
        stop();
        stream.pause();
        resolve({ chunks, ended: false });
      }
    };
    const onEnd = (): void => {
      stop();
      resolve({ chunks, ended: true });
    };
    const onError = (error: Error): void => {
      stop();
      reject(error);
    };
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('error', onError);
  });
}

/**
 * The body to send. The first `bufferBytes` are read into memory before the
 * upstream is called (with retries on, a body whose Content-Length is within
 * `replayLimit` is read whole, whatever `bufferBytes`): a body that ends
 * within is sent as bytes, and can be re-sent when within `replayLimit`; a
 * longer one streams on from where the buffer ends and is not retried.
 * Throws {@link BodyNotReplayableError} when a parser consumed a body it
 * cannot give back; rejects when the client aborts while it is read
 * (`ClientAbortedError`), stops sending for `idle` ms (`ProxyTimeoutError`
 * `upload`) or passes `maxBytes` (`LimitExceededError`).
 */
export async function requestBody(req: IncomingMessage, policy: BodyPolicy, parsed?: ParsedBody): Promise<RequestBody> {
  if (!hasRequestBody(req)) return NO_BODY;
  if (req.readableEnded) {
    // Express's parsers leave what they read on the request itself.
    const onRequest = req as IncomingMessage & { body?: unknown; rawBody?: unknown };
    const bytes = rebuildBody(req, parsed ?? { parsed: onRequest.body, raw: onRequest.rawBody });
    if (bytes === null) throw new BodyNotReplayableError(mediaType(req));
    return { body: bytes, rebuilt: true, replayable: true };
  }
  const { replayLimit } = policy;
  const length = Number(req.headers['content-length']);
  const whole = replayLimit !== null && req.headers['transfer-encoding'] === undefined && length <= replayLimit ? length : 0;
  const stream = new ClientBody(req, policy.idle);
  const limit = Math.max(policy.bufferBytes, whole);
  if (limit === 0) return { body: stream, rebuilt: false, replayable: false };
  const { chunks, ended } = await readUpTo(stream, limit, policy.maxBytes);
  const bytes = Buffer.concat(chunks);
  if (ended) return { body: bytes, rebuilt: false, replayable: replayLimit !== null && bytes.length <= replayLimit };
  // What was read goes out first, then the rest as it arrives.
  stream.unshift(bytes);
  return { body: stream, rebuilt: false, replayable: false };
}

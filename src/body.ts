// Decides what to send upstream as the request body: nothing, the client's
// stream as it arrives, or — when a body parser (express.json() and friends)
// already read the stream — the bytes rebuilt from what it parsed. A consumed
// body that cannot be rebuilt is a configuration error, never a hang.

import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { BodyNotReplayableError, ClientAbortedError } from './errors.js';

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

function mediaType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

function charsetOf(req: IncomingMessage): BufferEncoding {
  const match = /;\s*charset\s*=\s*"?([\w-]+)"?/i.exec(req.headers['content-type'] ?? '');
  const charset = match?.[1]?.toLowerCase();
  if (charset === 'latin1' || charset === 'iso-8859-1') return 'latin1';
  return 'utf8';
}

// The bracket syntax of the `qs` module (express.urlencoded({ extended: true })).
function appendForm(params: URLSearchParams, key: string, value: unknown): boolean {
  if (value === null || value === undefined) {
    params.append(key, '');
    return true;
  }
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
    params.append(key, String(value));
    return true;
  }
  if (Array.isArray(value)) return value.every((item, index) => appendForm(params, `${key}[${index}]`, item));
  if (typeof value === 'object') {
    return Object.entries(value).every(([name, item]) => appendForm(params, `${key}[${name}]`, item));
  }
  return false;
}

function encodeForm(parsed: object): Buffer | null {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(parsed)) {
    if (!appendForm(params, key, value)) return null;
  }
  return Buffer.from(params.toString());
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
  /**
   * Told of every chunk as it is read from the client, before anyone else
   * sees it (a 'data' listener added later could miss what the stream had
   * already buffered).
   */
  onProgress: ((chunk: Buffer) => void) | null = null;

  constructor(req: IncomingMessage) {
    super();
    this.#req = req;
    // Paused first, so that adding the 'data' listener does not start the flow.
    req.pause();
    req.on('data', this.#onData);
    req.once('end', this.#onEnd);
    req.once('error', this.#onAbort);
    req.once('close', this.#onClose);
  }

  override _read(): void {
    this.#req.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
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
    this.onProgress?.(chunk);
    if (this.destroyed) return;
    if (!this.push(chunk)) this.#req.pause();
  };

  readonly #onEnd = (): void => {
    this.push(null);
  };

  readonly #onAbort = (): void => {
    this.destroy(new ClientAbortedError());
  };

  readonly #onClose = (): void => {
    if (!this.#req.readableEnded) this.#onAbort();
  };
}

/** A body a framework's parser already read, and its raw bytes or text when it kept them. */
export interface ParsedBody {
  readonly parsed: unknown;
  readonly raw?: unknown;
}

function rebuild(req: IncomingMessage, { parsed, raw }: ParsedBody): Buffer | null {
  // A raw copy kept by the app or the parser is the exact bytes.
  if (Buffer.isBuffer(raw)) return raw;
  if (typeof raw === 'string') return Buffer.from(raw, charsetOf(req));
  if (Buffer.isBuffer(parsed)) return parsed;
  if (typeof parsed === 'string') return Buffer.from(parsed, charsetOf(req));
  if (typeof parsed !== 'object' || parsed === null) return null;
  const type = mediaType(req);
  if (type === 'application/json' || type.endsWith('+json')) return Buffer.from(JSON.stringify(parsed));
  if (type === 'application/x-www-form-urlencoded') return encodeForm(parsed);
  return null;
}

/**
 * The body to send. With `replayLimit` (retries on), a body whose
 * Content-Length is within it is read into memory first so that every
 * attempt sends the same bytes; larger and chunked bodies stream once.
 * Throws {@link BodyNotReplayableError} when a parser consumed a body it
 * cannot give back, and rejects when the client aborts while it is read.
 */
export async function requestBody(req: IncomingMessage, replayLimit: number | null, parsed?: ParsedBody): Promise<RequestBody> {
  if (!hasRequestBody(req)) return NO_BODY;
  if (req.readableEnded) {
    // Express's parsers leave what they read on the request itself.
    const onRequest = req as IncomingMessage & { body?: unknown; rawBody?: unknown };
    const bytes = rebuild(req, parsed ?? { parsed: onRequest.body, raw: onRequest.rawBody });
    if (bytes === null) throw new BodyNotReplayableError(mediaType(req));
    return { body: bytes, rebuilt: true, replayable: true };
  }
  const length = Number(req.headers['content-length']);
  if (replayLimit !== null && req.headers['transfer-encoding'] === undefined && length <= replayLimit) {
    try {
      return { body: await buffer(req), rebuilt: false, replayable: true };
    } catch {
      // The only way reading the client's own request fails: it went away.
      throw new ClientAbortedError();
    }
  }
  return { body: new ClientBody(req), rebuilt: false, replayable: false };
}

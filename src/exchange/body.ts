// Decides what to send upstream as the request body: nothing, the client's
// stream as it arrives, or — when a body parser (express.json() and friends)
// already read the stream — the bytes rebuilt from what it parsed. A consumed
// body that cannot be rebuilt is a configuration error, never a hang.

import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { BodyNotReplayableError, ClientAbortedError } from '../contract/errors.js';
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
    const bytes = rebuildBody(req, parsed ?? { parsed: onRequest.body, raw: onRequest.rawBody });
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

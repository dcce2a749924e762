// The HTTP engine: one upstream attempt through undici's dispatch() with a
// handler that writes straight to the client response. It runs its own phase
// timers (undici's fire up to a second late) and respects backpressure in
// both directions. An attempt settles exactly once.

import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { Pool, type Dispatcher } from 'undici';
import type { ClientBody } from './body.js';
import { cutResponse, type ClientResponse } from './client-response.js';
import { showClientUrl } from './client-url.js';
import type { Phase } from '../contract/classify.js';
import { isProxyTimeout, LimitExceededError, ProxyTimeoutError, RewriteHookError, type TimerKind } from '../contract/errors.js';
import { clientResponseHeaders, withAppHeaders } from './headers.js';
import type { ResponseRewriter, ResponseSide } from './response-rewrite.js';
import { plainHeaders, refusePromise } from './rewrite.js';
import { codecFor, transformBody, type TransformResponse } from './transform.js';
import type { LimitOptions } from './limit-options.js';
import type { TimeoutOptions } from '../policy/timeout-options.js';

/** The keep-alive pool the proxy owns when no dispatcher is given. */
export function createPool(origin: string, timeout: Readonly<TimeoutOptions>): Dispatcher {
  return new Pool(origin, {
    // Our own timers are exact; undici's connect timer only reaps the socket
    // of an attempt we already gave up on.
    connect: { timeout: timeout.connect },
    headersTimeout: 0,
    bodyTimeout: 0,
  });
}

export interface AttemptSpec {
  readonly dispatcher: Dispatcher;
  readonly origin: string;
  readonly path: string;
  readonly method: string;
  readonly headers: Record<string, string | string[]>;
  readonly body: Buffer | ClientBody | null;
  readonly timeout: Readonly<TimeoutOptions>;
  readonly failureStatuses: ReadonlySet<number>;
  readonly limits: Readonly<LimitOptions>;
  readonly res: ClientResponse;
  /** Rewrites the response head (redirects, cookies, `headers.response`), or `null`. */
  readonly rewrite: ResponseRewriter | null;
  readonly transform: Readonly<Required<TransformResponse>> | null;
  readonly side: ResponseSide;
  /** Asked when the head goes to the client whether to copy the response (stale on error), or absent. */
  readonly keep?: KeepResponse | null | undefined;
  /** Told when the response head has gone to the client (a half-open breaker's probe is decided by it). */
  readonly onHead?: (() => void) | undefined;
  /** A hedged request's race, asked when a head that would go to the client arrives: `false` when another attempt's head won (src/exchange/hedge-race.ts). */
  readonly claim?: (() => boolean) | undefined;
}

/** Takes a copy of a response's body as it streams to the client. */
export interface ResponseTee {
  write(chunk: Buffer): void;
  /** The body ended whole. */
  end(): void;
  /** The attempt failed: nothing is kept. */
  drop(): void;
}

/** Decides on the origin's own head (hop-by-hop headers removed, before any rewrite or hook) whether to copy the response. */
export type KeepResponse = (statusCode: number, statusMessage: string | undefined, headers: OutgoingHttpHeaders) => ResponseTee | null;

export type AttemptOutcome =
  | { readonly kind: 'delivered' }
  | { readonly kind: 'status'; readonly statusCode: number; readonly headers: IncomingHttpHeaders }
  | { readonly kind: 'failed'; readonly error: unknown; readonly phase: Phase };

/** Aborts the upstream exchange of a failure status the proxy will not pass on. */
class DiscardedResponse extends Error {
  readonly code = 'ERR_RESILIENT_PROXY_DISCARDED';
}

/**
 * The longest a response head waits for its first body byte before it goes
 * to the client on its own. While it waits, a break still gets the error
 * contract (and a retry when safe); past it, an event stream or a long poll
 * must see its headers. Far below `timeout.idle`, and below what a person
 * notices; most bodies start in the same packet as their head.
 */
export const HEAD_HOLD_MS = 100;

// A failure status's body is read and dropped so its connection can be
// reused; one larger than this is not worth reading.
const DISCARD_LIMIT = 64 * 1024;

/** How long a head waits for its body: the hold, or the idle timeout when that is shorter. */
function holdMs(idle: number): number {
  return idle > 0 && idle < HEAD_HOLD_MS ? idle : HEAD_HOLD_MS;
}

/**
 * Hands one attempt (a request, a WebSocket handshake) to undici with its
 * timers off: the attempt runs its own, per phase. A dispatcher that throws
 * at once (a bad origin) fails the attempt at connect: the outcome is
 * returned then, `null` otherwise.
 */
export function dispatchAttempt(dispatcher: Dispatcher, options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): Extract<AttemptOutcome, { kind: 'failed' }> | null {
  // The caller's own object, made for this call: set here rather than copied.
  options.headersTimeout = 0;
  options.bodyTimeout = 0;
  try {
    dispatcher.dispatch(options, handler);
    return null;
  } catch (error) {
    return { kind: 'failed', error, phase: 'connect' };
  }
}

function isEventStream(contentType: OutgoingHttpHeaders[string]): boolean {
  return typeof contentType === 'string' && /^\s*text\/event-stream\s*(?:;|$)/i.test(contentType);
}

function isStream(body: AttemptSpec['body']): body is ClientBody {
  return body !== null && !Buffer.isBuffer(body);
}

export class Attempt implements Dispatcher.DispatchHandler {
  readonly #promise: Promise<AttemptOutcome>;
  #phase: Phase = 'connect';
  #settled = false;
  #reason: Error | null = null;
  #controller: Dispatcher.DispatchController | null = null;
  /**
   * One Node timer for every phase (see #arm): set to fire at `#timerAt`,
   * while the current phase runs out at `#due` (`performance.now()` ms) after
   * `#timerMs` without progress. A later deadline only moves `#due`.
   */
  #timer: NodeJS.Timeout | null = null;
  #timerAt = 0;
  #due = 0;
  #timerMs = 0;
  /** `hold`: the response head waits for its first body byte (see HEAD_HOLD_MS). */
  #timerKind: Exclude<TimerKind, 'total'> | 'hold' = 'connect';
  /** A failure status being discarded, with the bytes read of its body. */
  #discarding: { statusCode: number; headers: IncomingHttpHeaders; bytes: number } | null = null;
  /** Body bytes seen so far: the upload's while it is sent, then the response's. */
  #bytes = 0;
  /** The upstream's response head, not yet sent to the client. */
  #pending: { statusCode: number; statusMessage: string | undefined; headers: OutgoingHttpHeaders; origin: OutgoingHttpHeaders | null } | null = null;
  /** The body length the upstream's head declares (NaN for none). */
  #declared = Number.NaN;
  /** A held head's body, whole in its first chunk: sent with the head by one `end` (see onResponseData). */
  #whole: Buffer | null = null;
  /** Paused until the client drains, and the drain listener once attached. */
  #awaitingDrain = false;
  #drainListener: (() => void) | null = null;
  /** Listens for a streamed upload's end (only an upload that is still coming has one). */
  #sentListener: (() => void) | null = null;
  /** A response being read whole for `transformResponse`. */
  #buffer: Buffer[] | null = null;
  /** The upstream's response is in: the user's transform is running. */
  #transforming = false;
  /**
   * Bounds the read of a body to transform, head to last byte, by
   * `timeout.response`: the client has received nothing yet, and a body that
   * trickles a byte per `timeout.idle` would otherwise hold it for ever.
   */
  #readDeadline: NodeJS.Timeout | null = null;
  /** The response is an event stream: every chunk is flushed through compression middleware. */
  #stream = false;
  /** The copy of a response being kept for stale on error. */
  #tee: ResponseTee | null = null;
  #resolve!: (outcome: AttemptOutcome) => void;
  readonly #spec: AttemptSpec;
  /**
   * When the request was fully sent and when the response head arrived
   * (`performance.now()`; 0 for none): the upstream's own time, for
   * latency-aware balancing. Connecting and uploading are left out, so a new
   * connection's handshake does not make a host look slow.
   */
  sentAt = 0;
  headersAt = 0;
  /** The upstream's final status, once its response head arrived (0 before), for diagnostics. */
  statusCode = 0;

  constructor(spec: AttemptSpec) {
    this.#spec = spec;
    this.#promise = new Promise((resolve) => {
      this.#resolve = resolve;
    });
  }

  /** The headers this attempt sends. */
  get headers(): Record<string, string | string[]> {
    return this.#spec.headers;
  }

  start(): Promise<AttemptOutcome> {
    const spec = this.#spec;
    this.#arm('connect');
    const refused = dispatchAttempt(spec.dispatcher, { origin: spec.origin, path: spec.path, method: spec.method, headers: spec.headers, body: spec.body }, this);
    if (refused !== null) this.#settle(refused);
    return this.#promise;
  }

  /** Ends the attempt from outside (client gone, deadline). Safe to call at any time. */
  abort(reason: Error): void {
    if (this.#settled) return;
    // The deadline ran out in the user's transform, not in the upstream.
    const error = this.#transforming && isProxyTimeout(reason) ? new RewriteHookError('`transformResponse` did not settle before timeout.total', { cause: reason }) : reason;
    this.#settle({ kind: 'failed', error, phase: this.#phase });
    this.#cancelUpstream(reason);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    if (this.#reason !== null) {
      // We gave up while the request was queued or connecting: write nothing.
      controller.abort(this.#reason);
      return;
    }
    this.#controller = controller;
    this.#phase = 'request';
    const body = this.#spec.body;
    if (isStream(body) && !body.readableEnded) {
      this.#arm('idle');
      // Listeners made only for an upload still coming: a request without one allocates none.
      this.#sentListener = () => this.#requestSent();
      body.once('end', this.#sentListener);
      // What was read before the upstream was called counts toward the limit too.
      this.#bytes = body.received;
      body.onProgress = (chunk) => this.#uploadProgress(chunk);
    } else {
      this.#requestSent();
    }
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
    statusMessage?: string,
  ): void {
    if (this.#settled || statusCode < 200) return;
    this.headersAt = performance.now();
    this.statusCode = statusCode;
    this.#stopWatchingUpload();
    if (this.#spec.failureStatuses.has(statusCode)) {
      this.#discarding = { statusCode, headers, bytes: 0 };
      this.#arm('idle');
      return;
    }
    // A hedged request: only the first head to arrive goes to the client.
    if (this.#spec.claim !== undefined && !this.#spec.claim()) return;
    const limit = this.#spec.limits.responseBodyBytes;
    if (limit > 0 && Number(headers['content-length']) > limit) {
      const error = new LimitExceededError('response', limit);
      this.#settle({ kind: 'failed', error, phase: 'response' });
      this.#cancelUpstream(error);
      return;
    }
    // Held back until the first body byte (or the end): Node only puts
    // headers on the wire with the body, so until then the client has
    // received nothing, and a failure can still be answered with the contract.
    let outgoing = clientResponseHeaders(headers);
    const spec = this.#spec;
    // Stale on error keeps the origin's response: the hooks run again for whoever it is served to.
    const origin = spec.keep === null || spec.keep === undefined ? null : { ...outgoing };
    try {
      if (spec.rewrite !== null) outgoing = spec.rewrite(statusCode, outgoing, spec.side);
      if (spec.transform !== null && this.#transforms(spec.transform, statusCode, headers, outgoing)) this.#buffer = [];
    } catch (error) {
      this.#settle({ kind: 'failed', error: error instanceof RewriteHookError ? error : new RewriteHookError('`transformResponse.match` threw', { cause: error }), phase: 'response' });
      this.#cancelUpstream(error as Error);
      return;
    }
    this.#pending = { statusCode, statusMessage, headers: outgoing, origin };
    this.#declared = Number(headers['content-length']);
    this.#bytes = 0;
    // A 304 has no body, whatever its Content-Length says (RFC 9110 §8.6
    // allows one; undici would count the missing bytes as a mismatch): the
    // response is complete at its head.
    if (statusCode === 304) {
      this.onResponseEnd();
      return;
    }
    if (this.#buffer !== null) {
      this.#arm('idle');
      const { response } = spec.timeout;
      if (response > 0) this.#readDeadline = setTimeout(() => this.abort(new ProxyTimeoutError('response', response)), response);
      return;
    }
    this.#holdHead(outgoing);
  }

  /** A head to stream: sent at once for an event stream, else held for its first body byte (see HEAD_HOLD_MS). */
  #holdHead(outgoing: OutgoingHttpHeaders): void {
    this.#stream = isEventStream(outgoing['content-type']);
    // An event stream's client waits for its head, whatever comes next.
    if (this.#stream) {
      if (this.#commit(true)) this.#arm('idle');
      return;
    }
    // Most heads come with their first body bytes in the same read: the
    // hold's timer is armed only when none came by the end of this tick, so
    // most responses pay for no timer of their own (issue 20: 2.7 µs each).
    // Until then the response timer stays set (it cannot fire before the
    // tick ends), so the idle timer can restart it instead of replacing it.
    this.#timerKind = 'hold';
    process.nextTick(Attempt.#armHold, this);
  }

  /** The end of the tick a held head came in (a static function: no closure per response). */
  static #armHold(attempt: Attempt): void {
    attempt.#holdTick();
  }

  #holdTick(): void {
    // A whole body held for an end that did not come with it (a dispatcher
    // that delays the end) waits with the head: the hold sends both (#onTimer).
    if (!this.#settled && this.#pending !== null && this.#timerKind === 'hold') this.#arm('hold');
  }

  /** A whole body held for an end that did not come in the same read: it goes out as any first chunk does. */
  #flushWhole(): void {
    const whole = this.#whole;
    if (whole === null) return;
    this.#whole = null;
    const written = this.#spec.res.write(whole);
    this.#tee?.write(whole);
    if (!written && this.#controller !== null) this.#pauseForClient(this.#controller);
  }

  /** Whether this response is to be read whole and transformed. */
  #transforms(transform: Readonly<Required<TransformResponse>>, statusCode: number, headers: IncomingHttpHeaders, outgoing: OutgoingHttpHeaders): boolean {
    if (this.#spec.method === 'HEAD' || statusCode === 204 || statusCode === 304) return false;
    if (codecFor(outgoing['content-encoding']) === null) return false;
    if (Number(headers['content-length']) > transform.maxBytes) return false;
    const matched = transform.match(statusCode, headers);
    // A promise is truthy: every response would be read whole and transformed.
    refusePromise(matched, '`transformResponse.match` returned a promise; it must return a boolean');
    return matched;
  }

  /** Over `maxBytes`: what was read goes out as it came, and the rest streams. */
  #giveUpTransform(controller: Dispatcher.DispatchController): void {
    const chunks = this.#buffer ?? [];
    this.#buffer = null;
    this.#stopReadDeadline();
    if (!this.#commit()) return;
    this.#arm('idle');
    const res = this.#spec.res;
    let written = true;
    for (const chunk of chunks) {
      written = res.write(chunk);
      this.#tee?.write(chunk);
    }
    if (!written) this.#pauseForClient(controller);
  }

  async #finishTransform(transform: Readonly<Required<TransformResponse>>): Promise<void> {
    const chunks = this.#buffer ?? [];
    this.#buffer = null;
    this.#disarm();
    this.#stopReadDeadline();
    const pending = this.#pending;
    if (pending === null) return;
    const original = Buffer.concat(chunks);
    let body: Buffer = original;
    this.#transforming = true;
    try {
      const { side } = this.#spec;
      const context = { statusCode: pending.statusCode, headers: plainHeaders(pending.headers), req: side.req };
      const restore = showClientUrl(side.req, side.clientUrl);
      let transformed: Buffer | null;
      try {
        transformed = await transformBody(transform, pending.headers['content-encoding'], original, context, this.#spec.timeout.hook);
      } finally {
        restore();
      }
      // A body that does not decode as it says, or decodes past maxBytes, is passed on as it came.
      if (transformed !== null) {
        body = transformed;
        pending.headers['content-length'] = body.length;
        // The body changed: validators of the old one would lie.
        delete pending.headers.etag;
        delete pending.headers['content-md5'];
      }
    } catch (error) {
      if (!this.#settled) this.#settle({ kind: 'failed', error, phase: 'response' });
      return;
    } finally {
      this.#transforming = false;
    }
    if (this.#settled || !this.#commit()) return;
    this.#spec.res.end(body);
    // The origin's bytes: the transform runs again for whoever they are served to.
    this.#tee?.write(original);
    this.#settle({ kind: 'delivered' });
  }

  /**
   * Sends the held-back response head to the client (`flush`: on the wire now,
   * not with the first body byte); `false` when Node refuses it (the attempt
   * is then failed).
   */
  #commit(flush = false): boolean {
    const pending = this.#pending;
    if (pending === null) return true;
    this.#pending = null;
    const res = this.#spec.res;
    const tee = pending.origin === null ? null : (this.#spec.keep?.(pending.statusCode, pending.statusMessage, pending.origin) ?? null);
    try {
      const headers = withAppHeaders(res, pending.headers);
      if (pending.statusMessage === undefined || pending.statusMessage === '') res.writeHead(pending.statusCode, headers);
      else res.writeHead(pending.statusCode, pending.statusMessage, headers);
      if (flush) res.flushHeaders();
      this.#spec.onHead?.();
    } catch (error) {
      // A status or header value Node refuses to send (the upstream's fault);
      // drop what was set so the error response carries none of it.
      for (const name in pending.headers) res.removeHeader(name);
      tee?.drop();
      this.#settle({ kind: 'failed', error, phase: 'response' });
      this.#cancelUpstream(error as Error);
      return false;
    }
    this.#tee = tee;
    this.#phase = 'body';
    return true;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#settled) return;
    if (this.#discarding !== null) {
      this.#restart();
      this.#discarding.bytes += chunk.length;
      if (this.#discarding.bytes > DISCARD_LIMIT) this.#endDiscard();
      return;
    }
    const limit = this.#spec.limits.responseBodyBytes;
    this.#bytes += chunk.length;
    if (limit > 0 && this.#bytes > limit) {
      this.abort(new LimitExceededError('response', limit));
      return;
    }
    if (this.#buffer !== null) {
      this.#restart();
      this.#buffer.push(chunk);
      if (this.#bytes > (this.#spec.transform?.maxBytes ?? 0)) this.#giveUpTransform(controller);
      return;
    }
    if (this.#pending === null) this.#restart();
    else if (this.#bytes === this.#declared && this.#bytes === chunk.length) {
      // The whole body in one chunk, with the head still held: its end comes
      // in this same read, and head, body and end go out in one `res.end`
      // (one write without the cork Node holds to the next tick for `write`).
      this.#whole = chunk;
      return;
    } else if (this.#commit()) this.#arm('idle');
    else return;
    const res = this.#spec.res;
    const written = res.write(chunk);
    this.#tee?.write(chunk);
    // compression (Express) buffers what it deflates until told to flush.
    if (this.#stream) (res as ClientResponse & { flush?: () => void }).flush?.();
    if (!written) this.#pauseForClient(controller);
  }

  /** The client reads slower than the upstream sends: wait for it, and do not count its slowness against the upstream. */
  #pauseForClient(controller: Dispatcher.DispatchController): void {
    controller.pause();
    this.#disarm();
    this.#awaitingDrain = true;
    // One listener for the attempt's life: compression routes 'drain'
    // listeners to its zlib stream, where once()'s self-removal and off()
    // never reach, so a listener per pause would pile up there.
    if (this.#drainListener === null) {
      this.#drainListener = () => this.#clientDrained();
      this.#spec.res.on('drain', this.#drainListener);
    }
  }

  onResponseEnd(): void {
    if (this.#settled) return;
    if (this.#discarding !== null) {
      this.#endDiscard();
      return;
    }
    const transform = this.#spec.transform;
    if (this.#buffer !== null && transform !== null) {
      void this.#finishTransform(transform);
      return;
    }
    if (!this.#commit()) return;
    const whole = this.#whole;
    if (whole === null) this.#spec.res.end();
    else {
      this.#whole = null;
      this.#spec.res.end(whole);
      this.#tee?.write(whole);
    }
    this.#settle({ kind: 'delivered' });
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.#settled) return;
    if (this.#discarding !== null) {
      // The status is known; how its body ended does not matter.
      this.#endDiscard();
      return;
    }
    this.#settle({ kind: 'failed', error, phase: this.#phase });
  }

  /** Settles a failure status; the upstream connection is dropped unless its body was read whole. */
  #endDiscard(): void {
    const discarded = this.#discarding;
    if (discarded === null) return;
    this.#settle({ kind: 'status', statusCode: discarded.statusCode, headers: discarded.headers });
    if (discarded.bytes > DISCARD_LIMIT) {
      this.#cancelUpstream(new DiscardedResponse(`Upstream status ${discarded.statusCode} is a failure status`));
    }
  }

  #requestSent(): void {
    if (this.#settled || this.#phase !== 'request' && this.#phase !== 'connect') return;
    this.#stopWatchingUpload();
    this.#phase = 'response';
    this.sentAt = performance.now();
    this.#arm('response');
  }

  #uploadProgress(chunk: Buffer): void {
    this.#restart();
    const limit = this.#spec.limits.requestBodyBytes;
    this.#bytes += chunk.length;
    if (limit > 0 && this.#bytes > limit) this.abort(new LimitExceededError('request', limit));
  }

  #clientDrained(): void {
    if (this.#settled || !this.#awaitingDrain) return;
    this.#awaitingDrain = false;
    this.#arm('idle');
    this.#controller?.resume();
  }

  /** The attempt's one timer fired (a static function given the attempt: no closure per attempt). */
  static #fire(attempt: Attempt): void {
    attempt.#onTimer();
  }

  #onTimer(): void {
    this.#timer = null;
    if (this.#settled) return;
    // Set for an earlier phase, whose deadline has moved on since: the timer waits for the rest.
    const left = this.#due - performance.now();
    if (left >= 1) {
      this.#timer = setTimeout(Attempt.#fire, left, this);
      this.#timerAt = this.#due;
      return;
    }
    if (this.#discarding !== null) {
      this.#discarding.bytes = Number.POSITIVE_INFINITY;
      this.#endDiscard();
      return;
    }
    const { idle } = this.#spec.timeout;
    if (this.#timerKind === 'hold' && this.#whole !== null) {
      // The whole body came during the hold, its end not yet (a dispatcher
      // that delays it): no byte is late, whatever `idle` is; head and body
      // go out now, and the end gets the whole idle timeout.
      if (this.#commit()) {
        this.#arm('idle');
        this.#flushWhole();
      }
      return;
    }
    if (this.#timerKind === 'hold' && (idle === 0 || idle > HEAD_HOLD_MS)) {
      // No body byte yet: the head goes out now, and the idle timer counts
      // what the hold did not.
      if (this.#commit(true)) {
        this.#arm('idle', idle === 0 ? 0 : idle - HEAD_HOLD_MS);
        // Only this first gap counts the hold: each chunk after it restarts the whole `idle`.
        this.#timerMs = idle;
      }
      return;
    }
    const body = this.#spec.body;
    if (this.#timerKind === 'idle' && this.#phase === 'request' && isStream(body) && body.readableFlowing !== false) {
      // The upload stalls because the client sends nothing, not because the
      // upstream stopped reading: a slow client is the server's to time out.
      this.#arm('idle');
      return;
    }
    // A hold that outlasted the idle timeout: the first body byte is late.
    const kind = this.#timerKind === 'hold' ? 'idle' : this.#timerKind;
    this.abort(new ProxyTimeoutError(kind, this.#spec.timeout[kind]));
  }

  #arm(kind: Exclude<TimerKind, 'total'> | 'hold', ms = kind === 'hold' ? holdMs(this.#spec.timeout.idle) : this.#spec.timeout[kind]): void {
    this.#timerKind = kind;
    if (ms <= 0) {
      this.#disarm();
      return;
    }
    this.#timerMs = ms;
    this.#due = performance.now() + ms;
    // Phases mostly follow each other with later deadlines (connect 5 s, then
    // response and idle 30 s): the timer already set fires first and waits
    // for the rest (#onTimer), so a request sets one Node timer, not three
    // (issue 20). Only an earlier deadline (the head hold) sets it again.
    if (this.#timer !== null && this.#timerAt <= this.#due) return;
    this.#disarm();
    this.#timer = setTimeout(Attempt.#fire, ms, this);
    this.#timerAt = this.#due;
  }

  /** The current phase starts its time again: a body chunk came, or upload progress. */
  #restart(): void {
    if (this.#timer !== null) this.#due = performance.now() + this.#timerMs;
  }

  #disarm(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
  }

  #stopReadDeadline(): void {
    if (this.#readDeadline !== null) clearTimeout(this.#readDeadline);
    this.#readDeadline = null;
  }

  #stopWatchingUpload(): void {
    const body = this.#spec.body;
    if (isStream(body)) {
      if (this.#sentListener !== null) body.off('end', this.#sentListener);
      body.onProgress = null;
    }
  }

  #cancelUpstream(reason: Error): void {
    this.#reason = reason;
    this.#controller?.abort(reason);
  }

  #settle(outcome: AttemptOutcome): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#disarm();
    this.#stopReadDeadline();
    this.#stopWatchingUpload();
    if (this.#drainListener !== null) this.#spec.res.off('drain', this.#drainListener);
    if (this.#tee !== null) {
      // Only a body that ended whole is kept.
      if (outcome.kind === 'delivered') this.#tee.end();
      else this.#tee.drop();
      this.#tee = null;
    }
    if (outcome.kind === 'failed' && this.#phase === 'body') {
      // Headers are out: only a cut connection tells the client the body is
      // incomplete. end() would make a truncated body look whole.
      cutResponse(this.#spec.res, outcome.error);
    }
    this.#resolve(outcome);
  }
}

// One client request and everything that happens to it: its body, its
// attempts (each on a host the group picks, behind the breaker and the
// concurrency limit), its retries, and how it ends — with exactly one of the
// upstream's complete response, the error contract, or (headers already sent)
// a destroyed client connection. Per-request state lives here and nowhere else.
//
// A request's life, in the order `forward` runs it:
//   1. #readBody        — what of the body to read first (limits, 100-continue, parsers)
//   2. #startDeadline   — `timeout.total` (and a trusted client's deadline)
//   3. #runRequestHook  — an async `headers.request`, once, on the deadline's time
//   4. attemptLoop      — attempt-loop.ts, shared with WebSocket handshakes: the
//        breaker around the loop; runWithRetries calls attempt(n) (admission;
//        a hedged request's attempts raced by hedge-race.ts, see #hedgeable),
//        runAttempt(n) (pickHost: where a retry decides its host; then `open`,
//        below: the headers and the Attempt), recordAttempt, isCandidate/plan
//   5. #finish          — delivered, client gone, or failOrStale → the contract or a stale response

import type { IncomingMessage } from 'node:http';
import { classifyError } from '../contract/classify.js';
import { ClientAbortedError, isClientAborted, isProxyTimeout, LimitExceededError, ProxyTimeoutError, RewriteHookError } from '../contract/errors.js';
import type { FailureCode } from '../contract/failures.js';
import { sendProblem } from '../contract/problem.js';
import type { FailureEvent, StaleEvent } from '../observe/hooks.js';
import { ownAttemptHeader } from '../policy/retry-options.js';
import type { RequestHeadersHook } from './rewrite-options.js';
import type { Guarded } from '../upstream/breaker.js';
import type { Host } from '../upstream/group.js';
import { Attempt, type AttemptOutcome } from './attempt.js';
import { AttemptLoop } from './attempt-loop.js';
import type { HedgeLane } from './hedge-race.js';
import { callHook } from './call-hook.js';
import type { ProxyCore } from './core.js';
import { hasRequestBody, requestBody, type ClientBody } from './body.js';
import { showClientUrl } from './client-url.js';
import { cutResponse, type ClientResponse } from './client-response.js';
import { CLIENT_FAULTS, failureOf, fromClassification, internalFailure, problemInput, statusFor, type Failure, type Outcome } from './failure.js';
import { upstreamRequestHeaders } from './headers.js';
import { HOOK_CANCELLED, settleHook } from './hook-time.js';
import { hookedRequestHeaders, patchHeaders, plainHeaders } from './rewrite.js';
import type { ParsedBody } from './parsed-body.js';
import type { StaleLayer } from '../stale/layer.js';
import { PlaybackDispatcher, type Playback } from '../stale/replay.js';
import { formatDeadline, requestTotal, timeForAttempt } from '../policy/deadline.js';
import { endExchange, exchangeEnd, exchangeMessage, exchangeStart, staleChannel, type ExchangeMessage, type ExchangeOutcome } from '../observe/channels.js';

export { countsAgainstUpstream, fromClassification, internalFailure, refusal, statusFor, type Failure } from './failure.js';
export { callHook } from './call-hook.js';
export type { ProxyCore } from './core.js';

/** What an adapter knows about a request that Node's request object does not carry. */
export interface ForwardContext {
  /** The request target to forward, when the framework mounted the proxy under a prefix it did not strip. */
  readonly url?: string;
  /** A body the framework's parser already read (`parsed`), and its raw text when kept. */
  readonly body?: ParsedBody | undefined;
  /** The id the framework gave the request (Fastify's `request.id`), used when the client sent none. */
  readonly requestId?: string | undefined;
  /** Where the framework mounted the proxy (Fastify's prefix, koa-mount's path), for redirects. */
  readonly mountPath?: string | undefined;
  /** The request target as the client sent it, mount prefix included, when the framework keeps it elsewhere than `req` (Koa's `ctx.originalUrl`). */
  readonly originalUrl?: string | undefined;
}


/** nginx's status for a request whose client closed the connection before the response. */
const CLIENT_CLOSED_REQUEST = 499;

/** A kept response is played back whatever its status: it was no failure status when it was kept. */
const NO_FAILURE_STATUSES: ReadonlySet<number> = new Set();

/** A client waiting for `100 Continue` that nobody has sent yet. */
function expectsContinue(req: IncomingMessage, res: ClientResponse): boolean {
  const expect = req.headers.expect;
  return typeof expect === 'string' && expect.toLowerCase() === '100-continue' && (res as ClientResponse & { _sent100?: boolean })._sent100 !== true;
}

/** The request body as the attempts send it, once read. */
interface SentBody {
  readonly body: Buffer | ClientBody | null;
  /** The bytes a parser's output was rebuilt into: the headers must describe them. */
  readonly rebuilt: Buffer | null;
  readonly replayable: boolean;
}

const NO_BODY: SentBody = { body: null, rebuilt: null, replayable: true };

export class Exchange extends AttemptLoop {
  #headers: Record<string, string | string[]> | null = null;
  /** What the attempts send as the body, once read. */
  #sent: SentBody = NO_BODY;
  /** The diagnostics message of this exchange, only when someone listens. */
  readonly #message: ExchangeMessage | null = null;

  constructor(
    core: ProxyCore,
    readonly req: IncomingMessage,
    readonly res: ClientResponse,
    requestId: string,
    path: string,
    /** Where the proxy is mounted, '' at the root: redirects to the upstream are rewritten under it. */
    readonly mountPath: string,
    /** The request target as the client sent it: what `req.url` shows while a user function runs. */
    readonly clientUrl: string,
  ) {
    super(core, requestId, path, false);
    if (exchangeStart.hasSubscribers || exchangeEnd.hasSubscribers) {
      this.#message = exchangeMessage(requestId, core.config.upstream, this.method, path, req, false);
      if (exchangeStart.hasSubscribers) exchangeStart.publish(this.#message);
    }
  }

  /**
   * Reads what it must of the body, then runs the attempts; settles when the
   * exchange has ended. An error that is not the client's (a proxy bug) ends
   * it with the contract's internal failure here, so the caller needs no
   * `.catch` of its own (one promise less a request).
   */
  async forward(context: ForwardContext | undefined): Promise<void> {
    // `on`, not `once`: `finally` removes it, and `once` would wrap it in a closure of its own.
    this.res.on('close', this.#onClientClose);
    let bug: { readonly error: unknown } | null = null;
    try {
      if (!this.#admitBody()) return;
      // Most requests have no body: nothing to wait for.
      if (hasRequestBody(this.req) && !(await this.#readBody(context))) return;
      if (this.cancelReason !== null) {
        this.#gone();
        return;
      }
      this.#startDeadline();
      const hook = this.core.config.requestHeaders;
      if (typeof hook === 'function') {
        await this.#runRequestHook(hook);
        if (this.cancelledBy() !== null) {
          this.#gone();
          return;
        }
      }
      if (!this.#timeForFirstAttempt()) {
        const late = new ProxyTimeoutError('total', this.total);
        await this.failOrStale(fromClassification(classifyError(late, 'connect'), null, late));
        return;
      }
      this.hedging = this.#hedgeable();
      const ending = this.#finish(await this.attemptLoop());
      if (ending !== undefined) await ending;
    } catch (error) {
      if (isClientAborted(error) || isClientAborted(this.cancelReason)) {
        this.#gone();
        return;
      }
      bug = { error };
    } finally {
      this.stopDeadline();
      this.res.off('close', this.#onClientClose);
    }
    if (bug !== null) this.fail(internalFailure(bug.error));
  }

  /** The client's connection closed: stored once per exchange, so `forward` allocates no listener. */
  readonly #onClientClose = (): void => {
    const { res } = this;
    if (res.writableFinished) return;
    // The client left before any status was sent: loggers read 499, as
    // nginx logs it, not a status nobody sent. Nothing goes on the wire.
    if (!res.headersSent) res.statusCode = CLIENT_CLOSED_REQUEST;
    this.cancel(new ClientAbortedError());
  };

  /** Step 1a: a body declared too large is refused unread (413); `false` when the exchange ended so. */
  #admitBody(): boolean {
    const { req, res } = this;
    const maxBody = this.core.config.limits.requestBodyBytes;
    if (maxBody > 0 && Number(req.headers['content-length']) > maxBody) {
      // The body will not be read: the connection cannot carry another request.
      if (!res.headersSent) res.setHeader('connection', 'close');
      this.fail(fromClassification(classifyError(new LimitExceededError('request', maxBody), 'connect'), null, null));
      return false;
    }
    // Wired to the server's 'checkContinue' event, the proxy says `100
    // Continue` only once it means to read the body (a 413 or a refusal
    // comes first); otherwise Node already said it.
    if (expectsContinue(req, res)) res.writeContinue();
    return true;
  }

  /**
   * Step 1b: reads what it must of the body (all of it when it is to be
   * replayed on a retry, up to `limits.requestBufferBytes` otherwise).
   * `false` when the exchange ended (the client's own fault).
   */
  async #readBody(context: ForwardContext | undefined): Promise<boolean> {
    const { config } = this.core;
    const { retry } = config;
    const replayLimit = retry !== null && retry.retries > 0 ? retry.maxBodyBytes : null;
    const policy = { replayLimit, bufferBytes: config.limits.requestBufferBytes, maxBytes: config.limits.requestBodyBytes, idle: config.timeout.upload };
    let read;
    try {
      read = await requestBody(this.req, policy, context?.body);
    } catch (error) {
      const fault = classifyError(error, 'request');
      if (isClientAborted(error) || !CLIENT_FAULTS.has(fault.code)) throw error;
      this.fail(fromClassification(fault, null, error));
      return false;
    }
    const { body, rebuilt, replayable } = read;
    this.#sent = { body, rebuilt: rebuilt && Buffer.isBuffer(body) ? body : null, replayable };
    return true;
  }

  /**
   * Step 2: `timeout.total` starts once the body is in hand (a client's slow
   * upload is not the upstream's time), capped by a trusted client's deadline.
   */
  #startDeadline(): void {
    const { config } = this.core;
    this.startDeadline(requestTotal(config.timeout.total, this.req.headers, config.deadline));
  }

  /** Too little time left to be of use upstream (a trusted client's short deadline, a slow header hook): a total timeout, before any attempt. */
  #timeForFirstAttempt(): boolean {
    const { deadline } = this.core.config;
    return deadline === null || this.total === 0 || timeForAttempt(this.remaining(), deadline);
  }

  /** The headers attempt `n` sends to `host`: this request's, with the attempt's number and the time left. */
  #attemptHeaders(host: Host, n: number): Record<string, string | string[]> {
    const { config } = this.core;
    const headers = this.#upstreamHeaders(host);
    // The object is this request's own, and undici serialises it during
    // dispatch(): the next attempt may overwrite the number.
    const attemptHeader = config.retry?.attemptHeader;
    if (attemptHeader) headers[attemptHeader] = String(n);
    // What the proxy will still wait, minus the margin; a client's value in the header never passes through as is.
    if (config.deadline !== null) {
      if (this.total > 0) headers[config.deadline.header] = formatDeadline(this.remaining() - config.deadline.margin, config.deadline.format);
      else Reflect.deleteProperty(headers, config.deadline.header);
    }
    return headers;
  }

  /** The strategy (AttemptLoop): attempt `n` is an Attempt on `host`, writing to the client's response. */
  /** Whether this request may be hedged (`hedge` option): an idempotent method, a body in hand or none, two hosts or more. It earns its share of the budget. */
  #hedgeable(): boolean {
    const { hedge, group } = this.core.upstream;
    if (hedge === null || !hedge.options.methods.has(this.method)) return false;
    const { body } = this.#sent;
    if ((body !== null && !Buffer.isBuffer(body)) || group.hosts.length < 2) return false;
    hedge.earn();
    return true;
  }

  protected open(host: Host, n: number, lane: HedgeLane | null): Attempt {
    const { config } = this.core;
    const headers = this.#attemptHeaders(host, n);
    return new Attempt({
      dispatcher: host.dispatcher,
      origin: host.origin,
      path: this.path,
      method: this.method,
      headers,
      body: this.#sent.body,
      timeout: config.timeout,
      failureStatuses: config.failureStatuses,
      limits: config.limits,
      res: this.res,
      onHead: this.headed,
      claim: lane?.claim,
      rewrite: this.core.rewrite,
      transform: config.transformResponse,
      side: this,
      keep: this.core.stale?.keeper(this) ?? null,
    });
  }

  /**
   * Step 5: how the exchange ends, once the loop is done: delivered, the
   * client gone, or a failure (the contract, or a stale response). A promise
   * only while a kept response is looked up.
   */
  #finish(result: Outcome | Guarded<Outcome>): Promise<void> | undefined {
    this.current = null;
    const outcome = this.unguarded(result);
    if (outcome.kind !== 'delivered' && this.noRetry === null) {
      const { retry } = this.core.config;
      this.noRetry = retry === null || retry.retries === 0 ? 'disabled' : this.replayable() ? 'retries-exhausted' : 'body-not-replayable';
    }
    if (outcome.kind === 'delivered') {
      if (this.#message !== null) this.#ended('delivered', this.res.statusCode, null);
      return undefined;
    }
    // A client that left is not an upstream failure: the attempt is
    // cancelled and nothing is reported or counted.
    if (isClientAborted(this.cancelReason) || (outcome.kind === 'failed' && isClientAborted(outcome.error))) {
      this.#gone();
      return undefined;
    }
    return this.failOrStale(failureOf(outcome));
  }

  /** Publishes the end of the exchange, when its start was published. */
  #ended(outcome: ExchangeOutcome, statusCode: number | null, code: FailureCode | null): void {
    if (this.#message !== null) endExchange(this.#message, outcome, statusCode, code, this.attempts);
  }

  /** The client left: nothing is reported, but a subscriber is told. */
  #gone(): void {
    if (this.#message !== null) this.#ended('client-gone', this.res.headersSent ? this.res.statusCode : null, null);
  }

  get method(): string {
    return this.req.method ?? 'GET';
  }

  protected responseStarted(): boolean {
    return this.res.headersSent;
  }

  protected replayable(): boolean {
    return this.#sent.replayable;
  }

  #report(failure: Failure, statusCode: number | null): void {
    const { onFailure } = this.core.config.hooks;
    if (onFailure === undefined) return;
    const event: FailureEvent =
      this.noRetry === null ? { ...this.event(failure), attempts: this.attempts, statusCode } : { ...this.event(failure), attempts: this.attempts, statusCode, noRetry: this.noRetry };
    callHook(onFailure, event);
  }

  /** Ends the exchange with a failure: the contract, or a cut connection once headers are out. */
  fail(initial: Failure): void {
    const { req, res } = this;
    const { config } = this.core;
    if (initial.phase === 'body' || res.headersSent) {
      cutResponse(res, initial.error);
      const cut: Failure = initial.phase === 'body' ? initial : { ...initial, code: 'UPSTREAM_RESPONSE_INCOMPLETE' };
      this.#report(cut, null);
      if (this.#message !== null) this.#ended('cut', res.headersSent ? res.statusCode : null, cut.code);
      return;
    }
    const { status, failure } = statusFor(this.core.config, initial);
    // A body the client has not finished sending will not be read: the connection cannot carry another request.
    if (CLIENT_FAULTS.has(failure.code) && !req.complete) res.setHeader('connection', 'close');
    const sending = !res.destroyed && !res.writableEnded;
    if (sending) {
      sendProblem(req, res, problemInput(config, failure, status, this.attempts, this.requestId));
    }
    this.#report(failure, status);
    if (this.#message !== null) this.#ended(sending ? 'contract' : 'client-gone', sending ? status : null, failure.code);
  }

  /**
   * Ends the exchange with a failure, or, when `staleIfError` keeps a
   * response that may stand in for it, with that response: then
   * `hooks.onStale` is told instead of `onFailure`. Synchronous (undefined)
   * unless a kept response is looked up.
   */
  failOrStale(failure: Failure): Promise<void> | undefined {
    const stale = this.core.stale;
    if (stale === undefined || stale === null || !stale.covers(this, failure)) {
      this.fail(failure);
      return undefined;
    }
    return this.#serveStale(stale, failure);
  }

  async #serveStale(stale: StaleLayer, failure: Failure): Promise<void> {
    const served = await stale.serve(this, failure, (playback) => this.#play(playback)).catch(() => null);
    if (served === null) {
      this.fail(failure);
      return;
    }
    const { onStale } = this.core.config.hooks;
    if (onStale !== undefined || staleChannel.hasSubscribers) {
      const event: StaleEvent = { ...this.event(failure), attempts: this.attempts, statusCode: served.statusCode, age: served.age };
      callHook(onStale, event);
      if (staleChannel.hasSubscribers) staleChannel.publish(event);
    }
    this.#ended('stale', served.statusCode, failure.code);
  }

  /** Plays a kept response back through an attempt, so the response hooks run for this request. */
  async #play(playback: Playback): Promise<AttemptOutcome> {
    const { config } = this.core;
    const attempt = new Attempt({
      dispatcher: new PlaybackDispatcher(playback),
      origin: config.origin,
      path: this.path,
      method: this.method,
      headers: {},
      body: null,
      timeout: config.timeout,
      failureStatuses: NO_FAILURE_STATUSES,
      limits: config.limits,
      res: this.res,
      rewrite: this.core.rewrite,
      transform: config.transformResponse,
      side: this,
    });
    this.current = attempt;
    try {
      return await attempt.start();
    } finally {
      this.current = null;
    }
  }

  /** Headers for the upstream, built when the first attempt really runs: a refusal needs none. */
  #upstreamHeaders(host: Host): Record<string, string | string[]> {
    const { config } = this.core;
    let headers = this.#headers;
    if (headers === null) {
      headers = upstreamRequestHeaders(this.req, {
        requestIdHeader: config.requestIdHeader,
        requestId: this.requestId,
        host: config.changeOrigin ? host.authority : this.req.headers.host,
        trustProxy: config.trustProxy,
        attemptHeader: ownAttemptHeader(config),
      });
      const { rebuilt } = this.#sent;
      if (rebuilt !== null) {
        headers['content-length'] = String(rebuilt.length);
        delete headers['content-encoding'];
      }
      const patch = config.requestHeaders;
      if (patch !== null && typeof patch !== 'function') headers = patchHeaders(headers, patch);
      this.#headers = headers;
    } else if (config.changeOrigin && this.host !== host) {
      headers.host = host.authority;
    }
    return headers;
  }

  /** Step 3: runs `headers.request` on the headers the first attempt would send; what it returns is what every attempt sends. */
  async #runRequestHook(hook: RequestHeadersHook): Promise<void> {
    const host = this.core.upstream.group.hosts[0];
    if (host === undefined) return;
    const built = this.#upstreamHeaders(host);
    // The client leaving or the deadline ends the wait; so does `timeout.hook`.
    const restore = showClientUrl(this.req, this.clientUrl);
    let returned: Awaited<ReturnType<RequestHeadersHook>> | typeof HOOK_CANCELLED;
    try {
      returned = await settleHook('headers.request', this.core.config.timeout.hook, () => hook(plainHeaders(built), this.req), () => this.signal());
    } finally {
      restore();
    }
    // The deadline ran out while the hook ran: the upstream, never called, is not to blame.
    const reason = this.cancelledBy();
    if (isProxyTimeout(reason)) throw new RewriteHookError('`headers.request` did not settle before timeout.total', { cause: reason });
    if (returned !== HOOK_CANCELLED) this.#headers = hookedRequestHeaders(built, returned);
  }
}

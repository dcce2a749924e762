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
//   4. #attemptLoop     — the breaker around the whole loop; runWithRetries calls
//        attempt(n)     — admission: cancelled, capacity, a circuit that opened
//        #hedged(n)     — a hedged request: attempts raced by hedge-race.ts, each a #runAttempt
//        #runAttempt(n) — the host pick (#pickHost), the headers, the Attempt
//        #recordAttempt — what the group, retry throttling and adaptive limits learn
//        isCandidate / plan — whether to retry, and after what delay (#planRetry)
//   5. #finish          — delivered, client gone, or failOrStale → the contract or a stale response

import type { IncomingMessage } from 'node:http';
import { classifyError, type Phase } from '../contract/classify.js';
import { ClientAbortedError, isClientAborted, isProxyTimeout, LimitExceededError, ProxyTimeoutError, RewriteHookError } from '../contract/errors.js';
import type { FailureCode } from '../contract/failures.js';
import { sendProblem } from '../contract/problem.js';
import type { ExchangeEvent, FailureEvent, NoRetryReason, RequestHeadersHook, ResolvedOptions, RetryEvent, StaleEvent } from '../options.js';
import { ownAttemptHeader } from '../options.js';
import { runWithRetries, type RetryLoop } from '../policy/retry.js';
import { backoffDelay, isRetryable, parseRetryAfter, sentNothing } from '../policy/retry-policy.js';
import type { AttemptFailure, Host } from '../upstream/group.js';
import type { Guarded, HeadSignal } from '../upstream/breaker.js';
import type { UpstreamState } from '../upstream/registry.js';
import { Attempt, type AttemptOutcome } from './attempt.js';
import { hasRequestBody, requestBody, type ClientBody } from './body.js';
import { HedgeRace, isHedgeLost, type HedgeLane } from './hedge-race.js';
import { showClientUrl } from './client-url.js';
import { cutResponse, type ClientResponse } from './client-response.js';
import {
  attemptFailure,
  cancelledAttempt,
  CLIENT_FAULTS,
  countsAgainstBreaker,
  countsAgainstUpstream,
  endAttemptOf,
  failureOf,
  fromClassification,
  statusFor,
  type FailedOutcome,
  type Failure,
  type Outcome,
  type Refused,
} from './failure.js';
import { upstreamRequestHeaders } from './headers.js';
import type { ResponseRewriter } from './response-rewrite.js';
import { HOOK_CANCELLED, settleHook } from './hook-time.js';
import { hookedRequestHeaders, patchHeaders, plainHeaders } from './rewrite.js';
import type { ParsedBody } from './parsed-body.js';
import type { StaleLayer } from '../stale/layer.js';
import { PlaybackDispatcher, type Playback } from '../stale/replay.js';
import { limitSample } from '../policy/adaptive-concurrency.js';
import { formatDeadline, requestTotal, timeForAttempt } from '../policy/deadline.js';
import {
  attemptEnd,
  attemptMessage,
  attemptStart,
  budgetExhausted,
  endExchange,
  exchangeEnd,
  exchangeMessage,
  exchangeStart,
  refusalChannel,
  retryChannel,
  staleChannel,
  type AttemptMessage,
  type ExchangeMessage,
  type ExchangeOutcome,
} from '../observe/channels.js';

export { countsAgainstUpstream, fromClassification, internalFailure, refusal, statusFor, type Failure } from './failure.js';

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

/** What every exchange of one proxy shares: its options and its upstream's state. */
export interface ProxyCore {
  readonly config: ResolvedOptions;
  readonly upstream: UpstreamState;
  readonly rewrite: ResponseRewriter | null;
  /** Stale on error, when `staleIfError` is on. */
  readonly stale?: StaleLayer | null | undefined;
}

const HOOK_WARNED = new WeakSet<object>();

/** Failures in a row one host may drain from retry throttling before the rest count as the host's fault (while a healthy host can take the retry). */
const HOST_DRAIN_LIMIT = 2;

/** nginx's status for a request whose client closed the connection before the response. */
const CLIENT_CLOSED_REQUEST = 499;

/** A kept response is played back whatever its status: it was no failure status when it was kept. */
const NO_FAILURE_STATUSES: ReadonlySet<number> = new Set();

/** Hooks observe; one that throws must not break the request it observes. */
export function callHook<T>(hook: ((event: T) => void) | undefined, event: T): void {
  if (hook === undefined) return;
  try {
    hook(event);
  } catch (error) {
    if (!HOOK_WARNED.has(hook)) {
      HOOK_WARNED.add(hook);
      process.emitWarning(`A resilient-proxy hook threw; it is ignored: ${String(error)}`, {
        code: 'RESILIENT_PROXY_HOOK_ERROR',
      });
    }
  }
}

/** A client waiting for `100 Continue` that nobody has sent yet. */
function expectsContinue(req: IncomingMessage, res: ClientResponse): boolean {
  const expect = req.headers.expect;
  return typeof expect === 'string' && expect.toLowerCase() === '100-continue' && (res as ClientResponse & { _sent100?: boolean })._sent100 !== true;
}

/** `timeout.total` ran out: a timer's callback, given the exchange as its argument (no closure per request). */
function expire(exchange: Exchange, total: number): void {
  exchange.cancel(new ProxyTimeoutError('total', total));
}

/** The request body as the attempts send it, once read. */
interface SentBody {
  readonly body: Buffer | ClientBody | null;
  /** The bytes a parser's output was rebuilt into: the headers must describe them. */
  readonly rebuilt: Buffer | null;
  readonly replayable: boolean;
}

const NO_BODY: SentBody = { body: null, rebuilt: null, replayable: true };

export class Exchange implements RetryLoop<Outcome> {
  attempts = 0;
  current: Attempt | null = null;
  /** The attempts of a hedged request in flight together, while they race. */
  race: HedgeRace | null = null;
  cancelReason: Error | null = null;
  /** The hosts already tried, in order; allocated only when a retry needs it. */
  tried: Host[] | null = null;
  /** The host of the latest attempt. */
  host: Host | null = null;
  /** Why the latest failure was not retried, once that is decided. */
  #noRetry: NoRetryReason | null = null;
  /** A host has backed off for this request's Retry-After already. */
  #backedOff = false;
  #sleep: AbortController | null = null;
  #headers: Record<string, string | string[]> | null = null;
  /** What the attempts send as the body, once read. */
  #sent: SentBody = NO_BODY;
  /** When `timeout.total` started counting: once the body is in hand (0 without a deadline). */
  #deadlineFrom = 0;
  /** `timeout.total` for this request: capped by a trusted client's deadline (`deadline.trustClient`). */
  #total = 0;
  #deadline: NodeJS.Timeout | null = null;
  /** This request may be hedged (`hedge` option), decided once its body is in hand. */
  #hedging = false;
  /** Told when a response head reached the client: the breaker's half-open probe is decided by it. */
  #headed: HeadSignal | undefined = undefined;
  /** The diagnostics message of this exchange, only when someone listens. */
  readonly #message: ExchangeMessage | null = null;

  constructor(
    readonly core: ProxyCore,
    readonly req: IncomingMessage,
    readonly res: ClientResponse,
    readonly requestId: string,
    readonly path: string,
    /** Where the proxy is mounted, '' at the root: redirects to the upstream are rewritten under it. */
    readonly mountPath: string,
    /** The request target as the client sent it: what `req.url` shows while a user function runs. */
    readonly clientUrl: string,
  ) {
    if (exchangeStart.hasSubscribers || exchangeEnd.hasSubscribers) {
      this.#message = exchangeMessage(requestId, core.config.upstream, this.method, path, req, false);
      if (exchangeStart.hasSubscribers) exchangeStart.publish(this.#message);
    }
  }

  /** Reads what it must of the body, then runs the attempts; settles when the exchange has ended. */
  async forward(context: ForwardContext | undefined): Promise<void> {
    this.res.once('close', this.#onClientClose);
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
        if (this.#cancelledBy() !== null) {
          this.#gone();
          return;
        }
      }
      if (!this.#timeForFirstAttempt()) {
        const late = new ProxyTimeoutError('total', this.#total);
        await this.failOrStale(fromClassification(classifyError(late, 'connect'), null, late));
        return;
      }
      this.#hedging = this.#hedgeable();
      const ending = this.#finish(await this.#attemptLoop());
      if (ending !== undefined) await ending;
    } catch (error) {
      if (isClientAborted(error) || isClientAborted(this.cancelReason)) {
        this.#gone();
        return;
      }
      throw error;
    } finally {
      if (this.#deadline !== null) clearTimeout(this.#deadline);
      this.res.off('close', this.#onClientClose);
    }
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
    const total = requestTotal(config.timeout.total, this.req.headers, config.deadline);
    this.#total = total;
    if (total === 0) return;
    this.#deadlineFrom = performance.now();
    this.#deadline = setTimeout(expire, total, this, total);
  }

  /** Too little time left to be of use upstream (a trusted client's short deadline, a slow header hook): a total timeout, before any attempt. */
  #timeForFirstAttempt(): boolean {
    const { deadline } = this.core.config;
    return deadline === null || this.#total === 0 || timeForAttempt(this.#remaining(), deadline);
  }

  /**
   * Step 4: the attempt loop. The breaker counts requests after their
   * retries (on other hosts in a group: a bad host is outlier detection's to
   * handle), so a client whose requests fail weighs one failure per request,
   * not three. (Not async: the common path's promises are the loop's own.)
   */
  #attemptLoop(): Promise<Outcome | Guarded<Outcome>> {
    const { breaker } = this.core.upstream;
    return breaker === null ? this.#retryLoop() : breaker.run(this.#underBreaker, countsAgainstBreaker);
  }

  /** The loop as the breaker runs it, told how to signal a head (stored once per exchange). */
  readonly #underBreaker = (headed: HeadSignal): Promise<Outcome> => {
    this.#headed = headed;
    return this.#retryLoop();
  };

  /** Attempt 1, then retries while `isCandidate` and `plan` allow (policy/retry.ts runs the loop). */
  #retryLoop(): Promise<Outcome> {
    return this.retries === 0 || !this.#sent.replayable ? this.attempt(1) : runWithRetries(this);
  }

  /** Retries after the first attempt, by `retry.retries` (RetryLoop). */
  get retries(): number {
    return this.core.config.retry?.retries ?? 0;
  }

  /**
   * Attempt `n` (1 for the first), unless the proxy must refuse it: the
   * exchange was cancelled, the upstream is at capacity, or the circuit
   * opened since the loop began (RetryLoop).
   */
  attempt(n: number): Promise<Outcome> {
    if (this.cancelReason !== null) return Promise.resolve({ kind: 'failed', error: this.cancelReason, phase: 'connect' });
    const { upstream } = this.core;
    if (upstream.capacity !== null && upstream.inFlight >= upstream.capacity) {
      upstream.overloaded += 1;
      this.refused('UPSTREAM_OVERLOADED');
      return Promise.resolve({ kind: 'refused', code: 'UPSTREAM_OVERLOADED', retryAfter: null });
    }
    // A circuit that opened meanwhile stops the retries at once.
    const refused = n > 1 && upstream.breaker?.state === 'open' ? upstream.breaker.retryAfterSeconds() : null;
    if (refused !== null) {
      this.refused('CIRCUIT_OPEN');
      return Promise.resolve({ kind: 'refused', code: 'CIRCUIT_OPEN', retryAfter: String(refused) });
    }
    return this.#hedging ? this.#hedged(n) : this.#runAttempt(n);
  }

  /** Whether this request may be hedged (`hedge` option): an idempotent method, a body in hand or none, two hosts or more. It earns its share of the budget. */
  #hedgeable(): boolean {
    const { hedge, group } = this.core.upstream;
    if (hedge === null || !hedge.options.methods.has(this.method)) return false;
    const { body } = this.#sent;
    if ((body !== null && !Buffer.isBuffer(body)) || group.hosts.length < 2) return false;
    hedge.earn();
    return true;
  }

  /**
   * Whether a hedge may go out now: like a retry, it needs the breaker closed,
   * room under the concurrency limit, retry throttling's leave, time for the
   * deadline, a healthy host the request has not tried, and the client to
   * have no response yet; then it spends one from the hedge budget.
   */
  #mayHedge(): boolean {
    const { config, upstream } = this.core;
    if (this.cancelReason !== null || this.res.headersSent || upstream.hedge === null) return false;
    if (upstream.breaker !== null && upstream.breaker.state !== 'closed') return false;
    if (upstream.capacity !== null && upstream.inFlight >= upstream.capacity) return false;
    if (config.retry?.budget && !upstream.budget.allowsRetry()) return false;
    const remaining = this.#remaining();
    if (config.deadline === null ? remaining <= 0 : this.#total > 0 && !timeForAttempt(remaining, config.deadline)) return false;
    if (!upstream.group.hasHealthyUntried(this.#tried())) return false;
    return upstream.hedge.spend();
  }

  /** Attempt `n` and, while it waits for its head, its hedges: hedge-race.ts races them, each a #runAttempt on a host not yet tried. */
  async #hedged(n: number): Promise<AttemptOutcome> {
    const policy = this.core.upstream.hedge;
    if (policy === null) return this.#runAttempt(n);
    const race = new HedgeRace({ policy, run: (k, lane) => this.#runAttempt(k, lane), mayHedge: () => this.#mayHedge(), nextAttempt: () => this.attempts + 1 });
    this.race = race;
    try {
      return await race.run(n);
    } finally {
      this.race = null;
    }
  }

  /**
   * Where a retry decides its host: the group picks one, avoiding every host
   * tried so far — the previous one included, so the list must exist before
   * the pick, not only after it.
   */
  #pickHost(): Host {
    if (this.host !== null) this.tried ??= [this.host];
    return this.core.upstream.group.pick(this.tried);
  }

  /** Attempt `n` on the host the group picks: its headers, its accounting, and what it teaches the group. */
  async #runAttempt(n: number, lane: HedgeLane | null = null): Promise<AttemptOutcome> {
    const { upstream } = this.core;
    const host = this.#pickHost();
    const headers = this.#attemptHeaders(host, n);
    const attempt = this.#openAttempt(host, headers, lane);
    lane?.attach(attempt);
    this.tried?.push(host);
    this.host = host;
    this.current = attempt;
    this.attempts += 1;
    upstream.inFlight += 1;
    const inFlightAtStart = upstream.inFlight;
    host.active += 1;
    // Published before dispatch: a subscriber may still add headers (traceparent).
    let message: AttemptMessage | null = null;
    if (attemptStart.hasSubscribers || attemptEnd.hasSubscribers) {
      message = attemptMessage(this.requestId, this.core.config.upstream, host.origin, this.method, this.path, n, headers, false);
      message.hedge = lane?.hedge === true;
      if (attemptStart.hasSubscribers) attemptStart.publish(message);
    }
    let outcome: AttemptOutcome | null = null;
    try {
      outcome = await attempt.start();
      return outcome;
    } finally {
      upstream.inFlight -= 1;
      host.active -= 1;
      this.#recordAttempt(attempt, host, outcome, inFlightAtStart);
      if (message !== null) endAttemptOf(message, outcome, attempt.statusCode);
    }
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
      if (this.#total > 0) headers[config.deadline.header] = formatDeadline(this.#remaining() - config.deadline.margin, config.deadline.format);
      else Reflect.deleteProperty(headers, config.deadline.header);
    }
    return headers;
  }

  /** The Attempt on `host`, sending `headers`; a hedged request's attempts claim the response through their lane. */
  #openAttempt(host: Host, headers: Record<string, string | string[]>, lane: HedgeLane | null): Attempt {
    const { config } = this.core;
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
      onHead: this.#headed,
      claim: lane?.claim,
      rewrite: this.core.rewrite,
      transform: config.transformResponse,
      side: this,
      keep: this.core.stale?.keeper(this) ?? null,
    });
  }

  /** What the group (outlier detection, latency), retry throttling and adaptive concurrency learn from one attempt. */
  #recordAttempt(attempt: Attempt, host: Host, outcome: AttemptOutcome | null, inFlightAtStart: number): void {
    const { upstream, config } = this.core;
    // A client's abort and a hedge's loser say nothing about the host.
    const result = outcome === null || cancelledAttempt(outcome) ? 'neutral' : countsAgainstUpstream(outcome) ? 'failure' : 'success';
    const latency = attempt.headersAt === 0 || attempt.sentAt === 0 ? null : attempt.headersAt - attempt.sentAt;
    let failure = result === 'failure' && outcome !== null ? attemptFailure(outcome) : null;
    // One request backs off at most one host for its Retry-After: a
    // client whose requests draw 503s must not take the group down.
    if (failure?.retryAfter != null) {
      if (this.#backedOff) failure = { ...failure, retryAfter: null };
      this.#backedOff = true;
    }
    // Outlier detection counts every 5xx, as Envoy's consecutive_5xx
    // does, whether or not `failureStatuses` makes it a retryable failure:
    // a replica answering quick 500s must not pass for a healthy one.
    if (result === 'success' && attempt.statusCode >= 500) upstream.group.record(host, 'failure', latency, { code: 'UPSTREAM_STATUS', retryAfter: null });
    else upstream.group.record(host, result, latency, failure);
    // A hedge's loser was slow, not wrong: the balancer learns how long it had waited.
    if (outcome?.kind === 'failed' && isHedgeLost(outcome.error) && attempt.sentAt > 0) upstream.group.recordWait(host, performance.now() - attempt.sentAt);
    if (config.retry?.budget) this.#throttle(result, failure, outcome);
    if (upstream.adaptive !== null) {
      const sample = limitSample(attempt.sentAt, attempt.headersAt, outcome?.kind === 'failed' && isProxyTimeout(outcome.error));
      if (sample !== null) upstream.adaptive.record(attempt.sentAt, sample, inFlightAtStart);
    }
  }

  /**
   * Step 5: how the exchange ends, once the loop is done: delivered, the
   * client gone, or a failure (the contract, or a stale response). A promise
   * only while a kept response is looked up.
   */
  #finish(result: Outcome | Guarded<Outcome>): Promise<void> | undefined {
    this.current = null;
    const outcome = this.#unguarded(result);
    if (outcome.kind !== 'delivered' && this.#noRetry === null) {
      const { retry } = this.core.config;
      this.#noRetry = retry === null || retry.retries === 0 ? 'disabled' : this.#sent.replayable ? 'retries-exhausted' : 'body-not-replayable';
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

  /** The loop's outcome, or the breaker's refusal to run it. */
  #unguarded(result: Outcome | Guarded<Outcome>): Outcome {
    if (!('ran' in result)) return result;
    if (result.ran) return result.outcome;
    this.refused('CIRCUIT_OPEN');
    return { kind: 'refused', code: 'CIRCUIT_OPEN', retryAfter: String(result.retryAfterSeconds) };
  }

/** Publishes the end of the exchange, when its start was published. */
  #ended(outcome: ExchangeOutcome, statusCode: number | null, code: FailureCode | null): void {
    if (this.#message !== null) endExchange(this.#message, outcome, statusCode, code, this.attempts);
  }

  /** The client left: nothing is reported, but a subscriber is told. */
  #gone(): void {
    if (this.#message !== null) this.#ended('client-gone', this.res.headersSent ? this.res.statusCode : null, null);
  }

  /** Publishes a refusal to call the upstream (circuit open or capacity). */
  refused(code: Refused['code']): void {
    if (!refusalChannel.hasSubscribers) return;
    refusalChannel.publish({
      upstream: this.core.config.upstream,
      requestId: this.requestId,
      method: this.method,
      path: this.path,
      reason: code === 'CIRCUIT_OPEN' ? 'circuit_open' : 'capacity',
      code,
      attempts: this.attempts,
      upgrade: false,
    });
  }

  get method(): string {
    return this.req.method ?? 'GET';
  }

  /** Ends whatever is under way: the current attempt, or a backoff wait. */
  cancel(reason: Error): void {
    if (this.cancelReason !== null) return;
    this.cancelReason = reason;
    this.current?.abort(reason);
    this.race?.cancel(reason);
    this.#sleep?.abort(reason);
  }

  /** Why the exchange was cancelled, or `null` (a method, so a read after an await is not narrowed away). */
  #cancelledBy(): Error | null {
    return this.cancelReason;
  }

  /** Aborted when the exchange is cancelled (RetryLoop); created only when a retry waits, so the common path allocates no AbortController. */
  signal(): AbortSignal {
    this.#sleep ??= new AbortController();
    if (this.cancelReason !== null) this.#sleep.abort(this.cancelReason);
    return this.#sleep.signal;
  }

  #event(failure: Failure): ExchangeEvent {
    const { config } = this.core;
    return {
      code: failure.code,
      proxyStatus: failure.proxyStatus,
      phase: failure.phase,
      upstream: config.upstream,
      target: this.host?.origin ?? config.origin,
      requestId: this.requestId,
      method: this.method,
      path: this.path,
      receivedStatus: failure.receivedStatus,
      error: failure.error,
    };
  }

  #report(failure: Failure, statusCode: number | null): void {
    const { onFailure } = this.core.config.hooks;
    if (onFailure === undefined) return;
    const event: FailureEvent =
      this.#noRetry === null ? { ...this.#event(failure), attempts: this.attempts, statusCode } : { ...this.#event(failure), attempts: this.attempts, statusCode, noRetry: this.#noRetry };
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
      sendProblem(req, res, {
        code: failure.code,
        status,
        proxyStatus: failure.proxyStatus,
        receivedStatus: failure.receivedStatus,
        retryAfter: failure.retryAfter,
        upstream: config.name,
        attempts: this.attempts,
        requestId: this.requestId,
        proxyName: config.proxyName,
        requestIdHeader: config.requestIdHeader,
      });
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
      const event: StaleEvent = { ...this.#event(failure), attempts: this.attempts, statusCode: served.statusCode, age: served.age };
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

  /** The wait before the next attempt, or null when this failure must not be retried and `#noRetry` says why (RetryLoop). */
  plan(outcome: Outcome, attempt: number): number | null {
    return this.#planRetry(outcome as FailedOutcome, attempt);
  }

  #planRetry(outcome: FailedOutcome, attempt: number): number | null {
    const { config, upstream } = this.core;
    const retry = config.retry;
    if (retry === null) return this.#stop('disabled');
    if (this.cancelReason !== null) return this.#stop(isProxyTimeout(this.cancelReason) ? 'deadline' : 'refused');
    if (this.res.headersSent) return this.#stop('headers-sent');
    const failure = failureOf(outcome);
    let delay = backoffDelay(attempt, retry);
    const retryAfter = parseRetryAfter(failure.retryAfter);
    const total = this.#total;
    const remaining = this.#remaining();
    // Another host the request has not tried takes the retry: one host's
    // answer (its Retry-After, its refused connection) is about that host.
    const elsewhere = upstream.group.hasUntried(this.#tried());
    if (retryAfter !== null) {
      // The host that asked for time is backed off (group.record); another
      // host is tried at once. With none, honour the wish when the client can
      // afford the wait; otherwise fail now and pass the Retry-After on.
      if (elsewhere) delay = 0;
      else if (retryAfter > (total > 0 ? remaining : retry.maxDelay)) return this.#stop('retry-after');
      else delay = Math.max(delay, retryAfter);
    }
    // A retry elsewhere after an attempt that sent nothing (a refused
    // connection) adds no load to the upstream: throttling, which bounds that
    // load, does not stop it, and no backoff delays it (as nginx's
    // proxy_next_upstream): the host it goes to has not seen this request.
    // Nor does throttling stop a retry away from a host outlier detection
    // already holds to blame (`failing`, kept in only for lack of room).
    const free = this.#hostsFault(failure.code, failure.phase) && upstream.group.hasHealthyUntried(this.#tried());
    if (free && sentNothing(failure.code, failure.phase)) delay = 0;
    if (delay >= remaining) return this.#stop('deadline');
    // With deadline propagation, a retry that could tell the upstream less than `deadline.minimum` is not worth sending.
    if (config.deadline !== null && total > 0 && !timeForAttempt(remaining - delay, config.deadline)) return this.#stop('deadline');
    if (retry.budget !== null && !free && !upstream.budget.allowsRetry()) {
      if (budgetExhausted.hasSubscribers) {
        budgetExhausted.publish({ upstream: config.upstream, requestId: this.requestId, method: this.method, path: this.path, code: failure.code, attempt, upgrade: false });
      }
      return this.#stop('budget');
    }
    const { onRetry } = config.hooks;
    if (onRetry !== undefined || retryChannel.hasSubscribers) {
      const event: RetryEvent = { ...this.#event(failure), attempt, delay };
      callHook(onRetry, event);
      if (retryChannel.hasSubscribers) retryChannel.publish(event);
    }
    return delay;
  }

  /**
   * Feeds retry throttling: a failure drains it, a success refills it.
   */
  #throttle(result: 'success' | 'failure' | 'neutral', failure: AttemptFailure | null, outcome: AttemptOutcome | null): void {
    const { budget, group } = this.core.upstream;
    if (result === 'success') budget.recordSuccess();
    else if (failure === null || outcome === null) return;
    // A failure that sent nothing, or from a host detection already blames,
    // while a healthy host the request has not tried can take the retry,
    // says one host is down, not that the service is in trouble: it drains
    // nothing. Otherwise (one target, every host tried or failing: a total
    // outage) it drains like any other, so a refusing, resetting or failing
    // service is throttled whatever the number of instances.
    else if (!(this.#hostsFault(failure.code, outcome.kind === 'failed' ? outcome.phase : 'response') && group.hasHealthyUntried(this.#tried()))) budget.recordFailure();
  }

  /**
   * Whether a failure is about the host rather than the service: nothing was
   * sent, detection already holds the host to blame (failing, ejected), or
   * the host has failed more than twice in a row (a replica killed with many
   * requests in flight resets them all at once: one host must not drain
   * everyone's retries).
   */
  #hostsFault(code: FailureCode, phase: Phase | null): boolean {
    const host = this.host;
    return sentNothing(code, phase) || (host !== null && (host.failing || host.ejected || host.streak > HOST_DRAIN_LIMIT));
  }

  /** Milliseconds left of this request's `timeout.total` (Infinity without one). */
  #remaining(): number {
    return this.#total > 0 ? this.#total - (performance.now() - this.#deadlineFrom) : Number.POSITIVE_INFINITY;
  }

  #stop(reason: NoRetryReason): null {
    this.#noRetry = reason;
    return null;
  }

  /** The hosts this request has tried so far. */
  #tried(): readonly Host[] {
    return this.tried ?? (this.host === null ? [] : [this.host]);
  }

  /** Whether `outcome` is a failure another attempt may mend (RetryLoop). */
  isCandidate(outcome: Outcome): outcome is FailedOutcome {
    if (outcome.kind === 'delivered') return false;
    // A refusal ends the loop at once: an open circuit is not to be hammered.
    if (outcome.kind === 'refused') {
      this.#noRetry = 'refused';
      return false;
    }
    const idempotent = this.core.config.retry?.methods.has(this.method) === true;
    let code: FailureCode = 'UPSTREAM_STATUS';
    let phase: Phase | null = 'response';
    if (outcome.kind === 'failed') {
      if (isClientAborted(outcome.error)) return false;
      if (isProxyTimeout(outcome.error) && outcome.error.timer === 'total') {
        this.#noRetry = 'deadline';
        return false;
      }
      ({ code } = classifyError(outcome.error, outcome.phase));
      phase = outcome.phase;
    }
    const untried = code === 'UPSTREAM_RESPONSE_TIMEOUT' && this.core.upstream.group.hasUntried(this.#tried());
    if (isRetryable(code, phase, idempotent, untried)) return true;
    this.#noRetry = !idempotent && isRetryable(code, phase, true, untried) ? 'not-idempotent' : 'not-retryable';
    return false;
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
      returned = await settleHook('headers.request', this.core.config.timeout.hook, () => hook(plainHeaders(built), this.req), this.signal());
    } finally {
      restore();
    }
    // The deadline ran out while the hook ran: the upstream, never called, is not to blame.
    const reason = this.#cancelledBy();
    if (isProxyTimeout(reason)) throw new RewriteHookError('`headers.request` did not settle before timeout.total', { cause: reason });
    if (returned !== HOOK_CANCELLED) this.#headers = hookedRequestHeaders(built, returned);
  }
}

// The attempt machinery one client request runs through, HTTP request or
// WebSocket handshake alike: the breaker around the whole loop, admission
// (cancelled, capacity, a circuit that opened), the host pick, the in-flight
// accounting and diagnostics of each attempt, what the group, retry
// throttling and adaptive concurrency learn from it, and the retry decision.
// What differs between the two is the strategy a subclass gives: `open` (the
// attempt to make on a host) and `responseStarted` (nothing can be retried
// once the client has a response head).

import { classifyError, type Phase } from '../contract/classify.js';
import { isClientAborted, isProxyTimeout, ProxyTimeoutError } from '../contract/errors.js';
import type { FailureCode } from '../contract/failures.js';
import type { ExchangeEvent, NoRetryReason, RetryEvent } from '../observe/hooks.js';
import { runWithRetries, type RetryLoop } from '../policy/retry.js';
import { backoffDelay, isRetryable, parseRetryAfter, sentNothing } from '../policy/retry-policy.js';
import { limitSample } from '../policy/adaptive-concurrency.js';
import { timeForAttempt } from '../policy/deadline.js';
import type { Guarded, HeadSignal } from '../upstream/breaker.js';
import type { AttemptFailure, Host } from '../upstream/group.js';
import { attemptEnd, attemptMessage, attemptStart, budgetExhausted, refusalChannel, retryChannel, type AttemptMessage } from '../observe/channels.js';
import type { AttemptOutcome } from './attempt.js';
import { callHook } from './call-hook.js';
import type { ProxyCore } from './core.js';
import { attemptFailure, cancelledAttempt, countsAgainstBreaker, countsAgainstUpstream, endAttemptOf, failureOf, type FailedOutcome, type Failure, type Outcome, type Refused } from './failure.js';
import { HedgeRace, isHedgeLost, type HedgeLane } from './hedge-race.js';

/** One attempt on one host (an HTTP `Attempt`, a WebSocket `Handshake`): settles once. */
export interface UpstreamCall {
  start(): Promise<AttemptOutcome>;
  /** Ends the attempt from outside (client gone, deadline). Safe to call at any time. */
  abort(reason: Error): void;
  /** `performance.now()` when the request was fully sent and when the response head arrived; 0 for none. */
  readonly sentAt: number;
  readonly headersAt: number;
  /** The upstream's status once its head arrived, 0 before. */
  readonly statusCode: number;
  /** The headers it sends, for the diagnostics message (a subscriber may add some before dispatch). */
  readonly headers: Record<string, string | string[]>;
}

/** Failures in a row one host may drain from retry throttling before the rest count as the host's fault (while a healthy host can take the retry). */
const HOST_DRAIN_LIMIT = 2;

export abstract class AttemptLoop implements RetryLoop<Outcome> {
  attempts = 0;
  current: UpstreamCall | null = null;
  /** The attempts of a hedged request in flight together, while they race. */
  race: HedgeRace | null = null;
  cancelReason: Error | null = null;
  /** The hosts already tried, in order; allocated only when a retry needs it. */
  tried: Host[] | null = null;
  /** The host of the latest attempt. */
  host: Host | null = null;
  /** Why the latest failure was not retried, once that is decided. */
  protected noRetry: NoRetryReason | null = null;
  /** This request may be hedged (`hedge` option): the subclass decides, once its body is in hand. */
  protected hedging = false;
  /** Told when a response head reached the client: the breaker's half-open probe is decided by it. */
  protected headed: HeadSignal | undefined = undefined;
  /** `timeout.total` for this request (0 for none), and when it started counting. */
  protected total = 0;
  #deadlineFrom = 0;
  #deadline: NodeJS.Timeout | null = null;
  /** A host has backed off for this request's Retry-After already. */
  #backedOff = false;
  #sleep: AbortController | null = null;

  constructor(
    readonly core: ProxyCore,
    readonly requestId: string,
    readonly path: string,
    /** A WebSocket handshake: said in every event. */
    readonly upgrade: boolean,
  ) {}

  abstract get method(): string;

  /** The strategy: the attempt to make on `host` (attempt `n`; `lane`: one of a hedged request's raced attempts, which claims the response through it). Its outcome's `delivered` is the subclass's to act on. */
  protected abstract open(host: Host, n: number, lane: HedgeLane | null): UpstreamCall;

  /** Whether the client already has a response head: nothing is retried then. */
  protected abstract responseStarted(): boolean;

  /** Whether the request's body can be sent again. */
  protected abstract replayable(): boolean;

  /** Ends whatever is under way: the current attempt, or a backoff wait. */
  cancel(reason: Error): void {
    if (this.cancelReason !== null) return;
    this.cancelReason = reason;
    this.current?.abort(reason);
    this.race?.cancel(reason);
    this.#sleep?.abort(reason);
  }

  /** Why the request was cancelled, or `null` (a method, so a read after an await is not narrowed away). */
  protected cancelledBy(): Error | null {
    return this.cancelReason;
  }

  /** Starts `timeout.total` (`total` ms, 0 for none): it cancels the request when it runs out. */
  protected startDeadline(total: number): void {
    this.total = total;
    if (total === 0) return;
    this.#deadlineFrom = performance.now();
    this.#deadline = setTimeout(expire, total, this, total);
  }

  protected stopDeadline(): void {
    if (this.#deadline !== null) clearTimeout(this.#deadline);
  }

  /** Milliseconds left of this request's `timeout.total` (Infinity without one). */
  protected remaining(): number {
    return this.total > 0 ? this.total - (performance.now() - this.#deadlineFrom) : Number.POSITIVE_INFINITY;
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
      upgrade: this.upgrade,
    });
  }

  /** What every hook event of this request says about a failure. */
  protected event(failure: Failure): ExchangeEvent {
    const { config } = this.core;
    const event: ExchangeEvent = {
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
    return this.upgrade ? { ...event, upgrade: true } : event;
  }

  /**
   * The attempt loop. The breaker counts requests after their retries (on
   * other hosts in a group: a bad host is outlier detection's to handle), so
   * a client whose requests fail weighs one failure per request, not three.
   * Not async: the common path's promises are the loop's own.
   */
  protected attemptLoop(): Promise<Outcome | Guarded<Outcome>> {
    const { breaker } = this.core.upstream;
    return breaker === null ? this.#retryLoop() : breaker.run(this.#underBreaker, countsAgainstBreaker);
  }

  /** The loop as the breaker runs it, told how to signal a head (stored once per request). */
  readonly #underBreaker = (headed: HeadSignal): Promise<Outcome> => {
    this.headed = headed;
    return this.#retryLoop();
  };

  /** Attempt 1, then retries while `isCandidate` and `plan` allow (policy/retry.ts runs the loop). */
  #retryLoop(): Promise<Outcome> {
    return this.retries === 0 || !this.replayable() ? this.attempt(1) : runWithRetries(this);
  }

  /** The loop's outcome, or the breaker's refusal to run it. */
  protected unguarded(result: Outcome | Guarded<Outcome>): Outcome {
    if (!('ran' in result)) return result;
    if (result.ran) return result.outcome;
    this.refused('CIRCUIT_OPEN');
    return { kind: 'refused', code: 'CIRCUIT_OPEN', retryAfter: String(result.retryAfterSeconds) };
  }

  /** Retries after the first attempt, by `retry.retries` (RetryLoop). */
  get retries(): number {
    return this.core.config.retry?.retries ?? 0;
  }

  /** Aborted when the request is cancelled (RetryLoop); created only when a retry waits, so the common path allocates no AbortController. */
  signal(): AbortSignal {
    this.#sleep ??= new AbortController();
    if (this.cancelReason !== null) this.#sleep.abort(this.cancelReason);
    return this.#sleep.signal;
  }

  /**
   * Attempt `n` (1 for the first), unless the proxy must refuse it: the
   * request was cancelled, the upstream is at capacity, or the circuit
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
    return this.hedging ? this.#hedged(n) : this.runAttempt(n);
  }

  /**
   * Whether a hedge may go out now: like a retry, it needs the breaker closed,
   * room under the concurrency limit, retry throttling's leave, time for the
   * deadline, a healthy host the request has not tried, and the client to
   * have no response yet; then it spends one from the hedge budget.
   */
  #mayHedge(): boolean {
    const { config, upstream } = this.core;
    if (this.cancelReason !== null || this.responseStarted() || upstream.hedge === null) return false;
    if (upstream.breaker !== null && upstream.breaker.state !== 'closed') return false;
    if (upstream.capacity !== null && upstream.inFlight >= upstream.capacity) return false;
    if (config.retry?.budget && !upstream.budget.allowsRetry()) return false;
    const remaining = this.remaining();
    if (config.deadline === null ? remaining <= 0 : this.total > 0 && !timeForAttempt(remaining, config.deadline)) return false;
    if (!upstream.group.hasHealthyUntried(this.tried ?? (this.host === null ? [] : [this.host]))) return false;
    return upstream.hedge.spend();
  }

  /** Attempt `n` and, while it waits for its head, its hedges: hedge-race.ts races them, each a runAttempt on a host not yet tried. */
  async #hedged(n: number): Promise<AttemptOutcome> {
    const policy = this.core.upstream.hedge;
    if (policy === null) return this.runAttempt(n);
    const race = new HedgeRace({ policy, run: (k, lane) => this.runAttempt(k, lane), mayHedge: () => this.#mayHedge(), nextAttempt: () => this.attempts + 1 });
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
  protected pickHost(): Host {
    if (this.host !== null) this.tried ??= [this.host];
    return this.core.upstream.group.pick(this.tried);
  }

  /** Attempt `n` on the host the group picks: its accounting, its diagnostics, and what it teaches the group. */
  protected runAttempt(n: number, lane: HedgeLane | null = null): Promise<AttemptOutcome> {
    // Not async (an async function's await costs two promises more on every
    // request): one `then` settles the attempt's accounting, and a throw (a
    // proxy bug) still ends it and rejects, as the async function did.
    let ended: ((outcome: AttemptOutcome | null) => void) | null = null;
    try {
      const { upstream } = this.core;
      const host = this.pickHost();
      const call = this.open(host, n, lane);
      lane?.attach(call);
      this.tried?.push(host);
      this.host = host;
      this.current = call;
      this.attempts += 1;
      upstream.inFlight += 1;
      const inFlightAtStart = upstream.inFlight;
      host.active += 1;
      // Published before dispatch: a subscriber may still add headers (traceparent).
      let message: AttemptMessage | null = null;
      if (attemptStart.hasSubscribers || attemptEnd.hasSubscribers) {
        message = attemptMessage(this.requestId, this.core.config.upstream, host.origin, this.method, this.path, n, call.headers, this.upgrade);
        message.hedge = lane?.hedge === true;
        if (attemptStart.hasSubscribers) attemptStart.publish(message);
      }
      const end = (outcome: AttemptOutcome | null): void => {
        ended = null;
        if (!this.holdsSlot(call)) {
          upstream.inFlight -= 1;
          host.active -= 1;
        }
        this.recordAttempt(call, host, outcome, inFlightAtStart);
        if (message !== null) endAttemptOf(message, outcome, call.statusCode);
        // A race's host is its winner's, or the last to fail: a hedge started later must not take the failure's blame in events.
        if (lane !== null && !lane.lost) this.host = host;
      };
      ended = end;
      return call.start().then(
        (outcome) => {
          end(outcome);
          return outcome;
        },
        (error: unknown) => {
          end(null);
          throw error;
        },
      );
    } catch (error) {
      ended?.(null);
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the thrown value, unchanged
      return Promise.reject(error);
    }
  }

  /** Whether `call`'s slot (in flight, the host's active count) outlives it: a tunnel's does, until it closes. */
  protected holdsSlot(_call: UpstreamCall): boolean {
    return false;
  }

  /** What the group (outlier detection, latency), retry throttling and adaptive concurrency learn from one attempt. */
  protected recordAttempt(call: UpstreamCall, host: Host, outcome: AttemptOutcome | null, inFlightAtStart: number): void {
    const { upstream, config } = this.core;
    // A client's abort and a hedge's loser say nothing about the host.
    const result = outcome === null || cancelledAttempt(outcome) ? 'neutral' : countsAgainstUpstream(outcome) ? 'failure' : 'success';
    const latency = call.headersAt === 0 || call.sentAt === 0 ? null : call.headersAt - call.sentAt;
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
    if (result === 'success' && call.statusCode >= 500) upstream.group.record(host, 'failure', latency, { code: 'UPSTREAM_STATUS', retryAfter: null });
    else upstream.group.record(host, result, latency, failure);
    // A hedge's loser was slow, not wrong: the balancer learns how long it had waited.
    if (outcome?.kind === 'failed' && isHedgeLost(outcome.error) && call.sentAt > 0) upstream.group.recordWait(host, performance.now() - call.sentAt);
    if (config.retry?.budget) this.#throttle(result, failure, outcome);
    if (upstream.adaptive !== null) {
      const sample = limitSample(call.sentAt, call.headersAt, outcome?.kind === 'failed' && isProxyTimeout(outcome.error));
      if (sample !== null) upstream.adaptive.record(call.sentAt, sample, inFlightAtStart);
    }
  }

  /** The wait before the next attempt, or null when this failure must not be retried and `noRetry` says why (RetryLoop). */
  plan(outcome: Outcome, attempt: number): number | null {
    return this.#planRetry(outcome as FailedOutcome, attempt);
  }

  #planRetry(outcome: FailedOutcome, attempt: number): number | null {
    const { config, upstream } = this.core;
    const retry = config.retry;
    if (retry === null) return this.stop('disabled');
    if (this.cancelReason !== null) return this.stop(isProxyTimeout(this.cancelReason) ? 'deadline' : 'refused');
    if (this.responseStarted()) return this.stop('headers-sent');
    const failure = failureOf(outcome);
    let delay = backoffDelay(attempt, retry);
    const retryAfter = parseRetryAfter(failure.retryAfter);
    const total = this.total;
    const remaining = this.remaining();
    // Another host the request has not tried takes the retry: one host's
    // answer (its Retry-After, its refused connection) is about that host.
    const elsewhere = upstream.group.hasUntried(this.#tried());
    if (retryAfter !== null) {
      // The host that asked for time is backed off (group.record); another
      // host is tried at once. With none, honour the wish when the client can
      // afford the wait; otherwise fail now and pass the Retry-After on.
      if (elsewhere) delay = 0;
      else if (retryAfter > (total > 0 ? remaining : retry.maxDelay)) return this.stop('retry-after');
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
    if (delay >= remaining) return this.stop('deadline');
    // With deadline propagation, a retry that could tell the upstream less than `deadline.minimum` is not worth sending.
    if (config.deadline !== null && total > 0 && !timeForAttempt(remaining - delay, config.deadline)) return this.stop('deadline');
    if (retry.budget !== null && !free && !upstream.budget.allowsRetry()) {
      if (budgetExhausted.hasSubscribers) {
        budgetExhausted.publish({ upstream: config.upstream, requestId: this.requestId, method: this.method, path: this.path, code: failure.code, attempt, upgrade: this.upgrade });
      }
      return this.stop('budget');
    }
    const { onRetry } = config.hooks;
    if (onRetry !== undefined || retryChannel.hasSubscribers) {
      const event: RetryEvent = { ...this.event(failure), attempt, delay };
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

  protected stop(reason: NoRetryReason): null {
    this.noRetry = reason;
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
      this.noRetry = 'refused';
      return false;
    }
    const idempotent = this.core.config.retry?.methods.has(this.method) === true;
    let code: FailureCode = 'UPSTREAM_STATUS';
    let phase: Phase | null = 'response';
    if (outcome.kind === 'failed') {
      if (isClientAborted(outcome.error)) return false;
      if (isProxyTimeout(outcome.error) && outcome.error.timer === 'total') {
        this.noRetry = 'deadline';
        return false;
      }
      ({ code } = classifyError(outcome.error, outcome.phase));
      phase = outcome.phase;
    }
    const untried = code === 'UPSTREAM_RESPONSE_TIMEOUT' && this.core.upstream.group.hasUntried(this.#tried());
    if (isRetryable(code, phase, idempotent, untried)) return true;
    this.noRetry = !idempotent && isRetryable(code, phase, true, untried) ? 'not-idempotent' : 'not-retryable';
    return false;
  }
}

/** `timeout.total` ran out: a timer's callback, given the request as its argument (no closure per request). */
function expire(loop: AttemptLoop, total: number): void {
  loop.cancel(new ProxyTimeoutError('total', total));
}

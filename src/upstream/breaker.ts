// One circuit breaker per upstream, on opossum. It wraps each request (its
// retries included), so one client's retried failures weigh as one failure
// each; it counts upstream failures only (never client aborts, 4xx or
// successes); it decides a half-open probe on the probe's response head or
// on a short probe timeout, so a probe that never answers cannot hold the
// circuit; and it tells the proxy how long until the circuit half-opens, for
// Retry-After.

import CircuitBreaker from 'opossum';
import { breakerState } from '../observe/channels.js';

/** Breaker settings. Durations in ms. */
export interface BreakerOptions {
  /**
   * Failure percentage of the requests in the rolling window that opens the
   * circuit (it must be exceeded). Default `50` (Hystrix's and resilience4j's).
   */
  errorThresholdPercentage: number;
  /**
   * Requests (each counted once, whatever its retries) the rolling window
   * must hold before the circuit may open at all. Default `100`
   * (resilience4j's `minimumNumberOfCalls`, Envoy's success-rate
   * `request_volume`): below about 10 requests a second the circuit never
   * opens, so a single client cannot open it on a quiet service with a few
   * failing requests. opossum's own `0` would open on the very first failure.
   */
  volumeThreshold: number;
  /** How long, in ms, the circuit stays open before one probe is let through. Default `5000` (Hystrix's). */
  resetTimeout: number;
  /**
   * How long, in ms, a half-open probe holds the circuit's one place. A probe
   * is decided by its head (a head that reaches the client closes the
   * circuit at once, however long the body) or by a counted failure (which
   * re-opens it); with neither within this time, the next request becomes
   * the probe and the first one's outcome no longer decides anything (the
   * request itself keeps its own timers). A probe that never answers so holds
   * the circuit for at most this long. Default `2000` (the health check's
   * timeout).
   */
  probeTimeout: number;
  /** The rolling window, in ms, the percentage is computed over. Default `10000`. */
  rollingCountTimeout: number;
  /**
   * The most attempts in flight to the upstream at once; past it the proxy
   * answers `UPSTREAM_OVERLOADED` without calling. Default `0`: no limit.
   */
  capacity: number;
}

export type BreakerState = 'closed' | 'open' | 'halfOpen';

export interface BreakerStateChange {
  readonly upstream: string;
  readonly from: BreakerState;
  readonly to: BreakerState;
}

export interface BreakerStats {
  /** Attempts offered to the breaker in the rolling window, refused ones included. */
  readonly fires: number;
  readonly successes: number;
  readonly failures: number;
  /** Attempts refused because the circuit was open. */
  readonly rejects: number;
}

/** Marks an attempt outcome the breaker counts as a failure. */
class CountedFailure<T> extends Error {
  readonly outcome: T;

  constructor(outcome: T) {
    super('upstream failure');
    this.name = 'CountedFailure';
    this.outcome = outcome;
  }
}

// opossum builds a new Error, with its stack trace, for every refusal; at
// thousands of refusals a second that is the refusal's largest cost. The
// proxy makes the same decision first and reports it with this one error.
const REFUSED = Object.assign(new Error('Breaker is open'), { code: 'EOPENBREAKER' });

/** The arguments the closed fast path reports with its events (opossum's listeners read none). */
const NO_ARGS: readonly unknown[] = [];
const noHeadSignal: HeadSignal = () => undefined;

/** The result of offering an attempt to the breaker. */
export type Guarded<T> = { readonly ran: true; readonly outcome: T } | { readonly ran: false; readonly retryAfterSeconds: number };

/**
 * What the breaker hands the guarded work: call it when the response head
 * has reached the client, which decides a half-open probe as a success.
 */
export type HeadSignal = () => void;

/** The work opossum runs: an ordinary call, or the half-open call that waits for a probe's verdict. */
type Action = (start: () => Promise<unknown>, isFailure: (outcome: unknown) => boolean) => Promise<unknown>;

/** The verdict opossum's half-open call waits for: `null` for a success. */
type Verdict = (failure: CountedFailure<unknown> | null) => void;

export class UpstreamBreaker {
  readonly upstream: string;
  readonly #breaker: CircuitBreaker<Parameters<Action>>;
  readonly #resetTimeout: number;
  readonly #probeTimeout: number;
  readonly #errorThresholdPercentage: number;
  readonly #listeners = new Set<(change: BreakerStateChange) => void>();
  #state: BreakerState = 'closed';
  #openedAt = 0;
  /**
   * While half-open: opossum's one call, waiting for a probe's verdict. A
   * probe that brings no head within probeTimeout gives its place to the next
   * request, so the verdict may come from a later probe.
   */
  #verdict: Verdict | null = null;
  /** The probe in flight (its token), and the timer that releases its place. */
  #probe: object | null = null;
  #probeTimer: NodeJS.Timeout | null = null;

  constructor(upstream: string, options: Readonly<BreakerOptions>) {
    this.upstream = upstream;
    this.#resetTimeout = options.resetTimeout;
    this.#probeTimeout = options.probeTimeout;
    this.#errorThresholdPercentage = options.errorThresholdPercentage;
    const action: Action = async (start, isFailure) => {
      const outcome = await start();
      if (isFailure(outcome)) throw new CountedFailure(outcome);
      return outcome;
    };
    this.#breaker = new CircuitBreaker(action, {
      // Timeouts are the proxy's, per phase; opossum's would only race them.
      timeout: false,
      errorThresholdPercentage: options.errorThresholdPercentage,
      volumeThreshold: options.volumeThreshold,
      resetTimeout: options.resetTimeout,
      rollingCountTimeout: options.rollingCountTimeout,
      rollingCountBuckets: 10,
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
      name: upstream,
    });
    this.#breaker.on('open', () => {
      this.#openedAt = Date.now();
      this.#transition('open');
    });
    this.#breaker.on('halfOpen', () => this.#transition('halfOpen'));
    this.#breaker.on('close', () => this.#transition('closed'));
  }

  get state(): BreakerState {
    return this.#state;
  }

  get stats(): BreakerStats {
    const { fires, successes, failures, rejects } = this.#breaker.stats;
    return { fires, successes, failures, rejects };
  }

  /**
   * When the circuit refuses calls now (open, or half-open with a probe
   * under way): the seconds until it half-opens, counted as a refusal.
   * `null` when a call may go through.
   */
  refusal(): number | null {
    const breaker = this.#breaker;
    if (breaker.closed || breaker.pendingClose || this.#probePlaceFree()) return null;
    // Exactly opossum's refusal test; its statistics count these events.
    breaker.emit('fire', []);
    breaker.emit('reject', REFUSED);
    return this.retryAfterSeconds();
  }

  /**
   * Runs `attempt` unless the circuit is open (or half-open with a probe
   * under way). `isFailure` says which outcomes count against the upstream.
   * The outcome is always the attempt's own; a probe's verdict may come
   * earlier, from its head.
   */
  run<T>(attempt: (headed: HeadSignal) => Promise<T>, isFailure: (outcome: T) => boolean): Promise<Guarded<T>> {
    const breaker = this.#breaker;
    if (breaker.closed && !breaker.pendingClose && breaker.enabled && !breaker.isShutdown) return this.#runClosed(attempt, isFailure);
    return this.#runGuarded(attempt, isFailure);
  }

  /**
   * The closed circuit's call, without opossum's promise chain (about 8
   * promises and 2 closures a request): exactly what opossum's `call` does
   * when closed with no timeout, cache, coalescing, fallback, error filter or
   * capacity (none of which the proxy gives it), with the same events, so its
   * statistics and its decision to open stay its own.
   */
  #runClosed<T>(attempt: (headed: HeadSignal) => Promise<T>, isFailure: (outcome: T) => boolean): Promise<Guarded<T>> {
    const breaker = this.#breaker;
    breaker.emit('fire', NO_ARGS);
    const startedAt = Date.now();
    let pending: Promise<T>;
    try {
      pending = attempt(noHeadSignal);
    } catch (error) {
      // A throw (a proxy bug, not the upstream) is counted and rejected as opossum's async action did.
      this.#countFailure(error, startedAt);
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the thrown value, unchanged
      return Promise.reject(error);
    }
    return pending.then(
      (outcome): Guarded<T> => {
        if (isFailure(outcome)) this.#countFailure(new CountedFailure(outcome), startedAt);
        else breaker.emit('success', outcome, Date.now() - startedAt);
        return { ran: true, outcome };
      },
      (error: unknown) => {
        this.#countFailure(error, startedAt);
        throw error;
      },
    );
  }

  /** opossum's `fail`: counts the failure, then opens the circuit when the rolling window's failure rate exceeds the threshold. */
  #countFailure(error: unknown, startedAt: number): void {
    const breaker = this.#breaker;
    breaker.emit('failure', error, Date.now() - startedAt, NO_ARGS);
    if (breaker.warmUp) return;
    const { fires, failures } = breaker.stats;
    if (fires < breaker.volumeThreshold && !breaker.halfOpen) return;
    if ((failures / fires) * 100 > this.#errorThresholdPercentage || breaker.halfOpen) breaker.open();
  }

  /** Any other state: through opossum's `fire`. */
  async #runGuarded<T>(attempt: (headed: HeadSignal) => Promise<T>, isFailure: (outcome: T) => boolean): Promise<Guarded<T>> {
    const refused = this.refusal();
    if (refused !== null) return { ran: false, retryAfterSeconds: refused };
    const breaker = this.#breaker;
    if (breaker.halfOpen) return { ran: true, outcome: await this.#runProbe(attempt, isFailure) };
    const started: { pending: Promise<T> | null } = { pending: null };
    const start = (): Promise<T> => (started.pending = attempt(() => undefined));
    try {
      await breaker.fire(start, isFailure as (outcome: unknown) => boolean);
    } catch (error) {
      if ((error as { code?: unknown }).code === 'EOPENBREAKER') return { ran: false, retryAfterSeconds: this.retryAfterSeconds() };
      if (!(error instanceof CountedFailure)) throw error;
    }
    if (started.pending === null) return { ran: false, retryAfterSeconds: this.retryAfterSeconds() };
    return { ran: true, outcome: await started.pending };
  }

  /** Observes state changes; returns a function that stops observing. */
  onStateChange(listener: (change: BreakerStateChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Stops the breaker's timers. */
  shutdown(): void {
    this.#releaseProbe();
    this.#breaker.shutdown();
    this.#listeners.clear();
  }

  /** Whole seconds until the circuit half-opens; at least 1. */
  retryAfterSeconds(): number {
    if (this.#state !== 'open') return 1;
    return Math.max(1, Math.ceil((this.#openedAt + this.#resetTimeout - Date.now()) / 1000));
  }

  /** Half-open, opossum's call waiting, and no probe holding the place. */
  #probePlaceFree(): boolean {
    return this.#breaker.halfOpen && this.#verdict !== null && this.#probe === null;
  }

  /**
   * Runs a half-open probe. Its head reaching the client closes the circuit;
   * a counted failure re-opens it; with neither within probeTimeout, its place
   * goes to the next request and its own outcome no longer decides anything.
   */
  async #runProbe<T>(attempt: (headed: HeadSignal) => Promise<T>, isFailure: (outcome: T) => boolean): Promise<T> {
    if (this.#verdict === null) {
      const waiting = new Promise<unknown>((resolve, reject) => {
        this.#verdict = (failure) => (failure === null ? resolve(undefined) : reject(failure));
      });
      // opossum's half-open call; it opens or closes the circuit on the verdict.
      this.#breaker.fire(() => waiting, () => false).catch(() => undefined);
    }
    const token = {};
    this.#probe = token;
    this.#probeTimer = setTimeout(() => {
      if (this.#probe === token) this.#releaseProbe();
    }, this.#probeTimeout);
    this.#probeTimer.unref();
    const decide = (failure: CountedFailure<unknown> | null): void => {
      if (this.#probe !== token) return;
      const verdict = this.#verdict;
      this.#releaseProbe();
      this.#verdict = null;
      verdict?.(failure);
    };
    try {
      const outcome = await attempt(() => decide(null));
      decide(isFailure(outcome) ? new CountedFailure(outcome) : null);
      return outcome;
    } finally {
      // An attempt that threw (a proxy bug, not the upstream) decides nothing.
      if (this.#probe === token) this.#releaseProbe();
    }
  }

  #releaseProbe(): void {
    if (this.#probeTimer !== null) clearTimeout(this.#probeTimer);
    this.#probeTimer = null;
    this.#probe = null;
  }

  #transition(to: BreakerState): void {
    const from = this.#state;
    if (from === to) return;
    this.#state = to;
    const change: BreakerStateChange = { upstream: this.upstream, from, to };
    if (breakerState.hasSubscribers) breakerState.publish(change);
    for (const listener of this.#listeners) listener(change);
  }
}

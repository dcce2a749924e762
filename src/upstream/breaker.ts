// One circuit breaker per upstream, on opossum. It wraps each attempt, so
// retries count toward its statistics; it counts upstream failures only
// (never client aborts, 4xx or successes); and it tells the proxy how long
// until the circuit half-opens, for Retry-After.

import CircuitBreaker from 'opossum';
import { breakerState } from '../observe/channels.js';

/** Breaker settings. Durations in ms. */
export interface BreakerOptions {
  /** Failure percentage over the rolling window that opens the circuit. Default `50`. */
  errorThresholdPercentage: number;
  /**
   * Attempts the window must hold before the circuit may open at all. Default
   * `20` (Hystrix's default): opossum's own `0` would open on the very first failure.
   */
  volumeThreshold: number;
  /** How long the circuit stays open before one probe is let through. Default `5000` (Hystrix's). */
  resetTimeout: number;
  /** The rolling window the percentage is computed over. Default `10000`. */
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

/** The result of offering an attempt to the breaker. */
export type Guarded<T> = { readonly ran: true; readonly outcome: T } | { readonly ran: false; readonly retryAfterSeconds: number };

type Action = (attempt: () => Promise<unknown>, isFailure: (outcome: unknown) => boolean) => Promise<unknown>;

export class UpstreamBreaker {
  readonly upstream: string;
  readonly #breaker: CircuitBreaker<Parameters<Action>>;
  readonly #resetTimeout: number;
  readonly #listeners = new Set<(change: BreakerStateChange) => void>();
  #state: BreakerState = 'closed';
  #openedAt = 0;

  constructor(upstream: string, options: Readonly<BreakerOptions>) {
    this.upstream = upstream;
    this.#resetTimeout = options.resetTimeout;
    const action: Action = async (attempt, isFailure) => {
      const outcome = await attempt();
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
   * Runs `attempt` unless the circuit is open (or half-open with its probe
   * under way). `isFailure` says which outcomes count against the upstream.
   */
  /**
   * When the circuit refuses calls now (open, or half-open with its probe
   * under way): the seconds until it half-opens, counted as a refusal.
   * `null` when a call may go through.
   */
  refusal(): number | null {
    const breaker = this.#breaker;
    if (breaker.closed || breaker.pendingClose) return null;
    // Exactly opossum's refusal test; its statistics count these events.
    breaker.emit('fire', []);
    breaker.emit('reject', REFUSED);
    return this.#retryAfterSeconds();
  }

  async run<T>(attempt: () => Promise<T>, isFailure: (outcome: T) => boolean): Promise<Guarded<T>> {
    const refused = this.refusal();
    if (refused !== null) return { ran: false, retryAfterSeconds: refused };
    try {
      const outcome = (await this.#breaker.fire(attempt, isFailure as (outcome: unknown) => boolean)) as T;
      return { ran: true, outcome };
    } catch (error) {
      if (error instanceof CountedFailure) return { ran: true, outcome: error.outcome as T };
      if ((error as { code?: unknown }).code === 'EOPENBREAKER') return { ran: false, retryAfterSeconds: this.#retryAfterSeconds() };
      throw error;
    }
  }

  /** Observes state changes; returns a function that stops observing. */
  onStateChange(listener: (change: BreakerStateChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Stops the breaker's timers. */
  shutdown(): void {
    this.#breaker.shutdown();
    this.#listeners.clear();
  }

  /** Whole seconds until the circuit half-opens; at least 1. */
  #retryAfterSeconds(): number {
    if (this.#state !== 'open') return 1;
    return Math.max(1, Math.ceil((this.#openedAt + this.#resetTimeout - Date.now()) / 1000));
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

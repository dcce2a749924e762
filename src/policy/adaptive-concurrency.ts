// One upstream's adaptive concurrency limit as the proxy runs it: the
// Gradient2 limit fed with attempt latencies, minus those measured while our
// own event loop stalled, and what a snapshot shows of it.

import { AdaptiveLimit, type AdaptiveConcurrencyOptions } from './adaptive-limit.js';
import { loopLagSince, watchLoopLag } from './loop-lag.js';

/** A sample is dropped when our loop stalled for this share of it or more: a stall that small cannot move the gradient past its 1.5 tolerance. */
const LAG_SHARE = 0.1;

/** What `registry.snapshot()` shows of an adaptive limit. Latencies in ms. */
export interface AdaptiveLimitSnapshot {
  readonly adaptive: true;
  /** The limit now: the most attempts in flight at once. */
  readonly current: number;
  /** The latest window's average latency to the response head, in ms (0 before the first window). */
  readonly shortRtt: number;
  /** The long-term average it is compared with, in ms (0 before the first window). */
  readonly longRtt: number;
  /** Windows that have moved the limit so far. */
  readonly windows: number;
  /** Samples dropped because the proxy's own event loop stalled for a tenth of their time or more while they ran. */
  readonly discarded: number;
}

export class AdaptiveConcurrency {
  readonly #limit: AdaptiveLimit;
  readonly #unwatch: () => void;
  #discarded = 0;

  constructor(options: Readonly<AdaptiveConcurrencyOptions>) {
    this.#limit = new AdaptiveLimit(options);
    this.#unwatch = watchLoopLag();
  }

  get limit(): number {
    return this.#limit.limit;
  }

  /**
   * An attempt got its response head `rtt` ms after it was sent at `start`
   * (performance.now()), with `inFlight` attempts in flight when it started.
   */
  record(start: number, rtt: number, inFlight: number): void {
    if (loopLagSince(start) >= rtt * LAG_SHARE) {
      this.#discarded += 1;
      return;
    }
    this.#limit.sample(start, rtt, inFlight);
  }

  snapshot(): AdaptiveLimitSnapshot {
    const limit = this.#limit;
    return { adaptive: true, current: limit.limit, shortRtt: limit.shortRtt, longRtt: limit.longRtt, windows: limit.windows, discarded: this.#discarded };
  }

  close(): void {
    this.#unwatch();
  }
}

/**
 * The latency an attempt tells the limit, in ms: to its response head, or,
 * for one our timer ended, as long as it ran (an upstream too slow to answer
 * at all is the strongest signal: the reference's `onDropped` samples it
 * too); `null` for one that says nothing about the upstream's queue (refused,
 * cut, or cancelled by the client: the reference's `onIgnore`).
 */
export function limitSample(sentAt: number, headersAt: number, timedOut: boolean): number | null {
  if (sentAt === 0) return null;
  if (headersAt !== 0) return headersAt - sentAt;
  return timedOut ? performance.now() - sentAt : null;
}

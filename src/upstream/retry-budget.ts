// A retry budget per upstream, after Finagle's and Envoy's: retries may not
// exceed a share of the requests seen in a sliding window, plus a small floor
// so that a quiet service can still retry. Under a total outage this bounds
// the load a fleet of proxies adds to about (1 + ratio) × the client traffic.

export interface RetryBudgetOptions {
  /** Retries allowed per request in the window. Default `0.2` (20 %). */
  ratio: number;
  /** Retries always allowed per second of window, whatever the traffic. Default `3`. */
  minRetriesPerSecond: number;
  /** The sliding window, in ms. Default `10000`. */
  window: number;
}

const BUCKETS = 10;

export class RetryBudget {
  readonly #requests = new Float64Array(BUCKETS);
  readonly #retries = new Float64Array(BUCKETS);
  readonly #bucketMs: number;
  #bucket = 0;
  #bucketStart: number;
  readonly #now: () => number;

  constructor(window: number, now: () => number = () => performance.now()) {
    this.#bucketMs = window / BUCKETS;
    this.#now = now;
    this.#bucketStart = now();
  }

  /** Counts one client request (not its retries). */
  recordRequest(): void {
    this.#advance();
    this.#requests[this.#bucket] = (this.#requests[this.#bucket] ?? 0) + 1;
  }

  /** Takes one retry from the budget; `false` when it is spent. */
  tryRetry(options: RetryBudgetOptions): boolean {
    this.#advance();
    const allowed = options.minRetriesPerSecond * (options.window / 1000) + options.ratio * sum(this.#requests);
    if (sum(this.#retries) + 1 > allowed) return false;
    this.#retries[this.#bucket] = (this.#retries[this.#bucket] ?? 0) + 1;
    return true;
  }

  #advance(): void {
    const now = this.#now();
    let elapsed = Math.floor((now - this.#bucketStart) / this.#bucketMs);
    if (elapsed <= 0) return;
    this.#bucketStart += elapsed * this.#bucketMs;
    for (elapsed = Math.min(elapsed, BUCKETS); elapsed > 0; elapsed -= 1) {
      this.#bucket = (this.#bucket + 1) % BUCKETS;
      this.#requests[this.#bucket] = 0;
      this.#retries[this.#bucket] = 0;
    }
  }
}

function sum(values: Float64Array): number {
  let total = 0;
  for (const value of values) total += value;
  return total;
}

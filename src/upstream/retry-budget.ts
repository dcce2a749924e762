// A retry budget per upstream, after Finagle's and Envoy's: retries may not
// exceed a share of the requests seen in a sliding window, plus a small floor
// so that a quiet service can still retry. The floor never allows more retries
// than this instance's own requests could make (requests × retries), so a
// fleet of N proxies cannot turn it into N × floor retries of nobody's
// traffic: under a total outage the fleet's load stays a multiple of its
// clients' load, (1 + ratio) × when busy and at most (1 + retries) × when
// every instance is quiet.

export interface RetryBudgetOptions {
  /** Retries allowed per request in the window. Default `0.2` (20 %). */
  ratio: number;
  /** Retries allowed per second of window even at low traffic, but never more than this instance's own requests could make. Default `3`. */
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

  /** Takes one retry from the budget (`retriesPerRequest`: the most one request may make); `false` when it is spent. */
  tryRetry(options: RetryBudgetOptions, retriesPerRequest = 1): boolean {
    this.#advance();
    const requests = sum(this.#requests);
    const allowed = Math.min(options.minRetriesPerSecond * (options.window / 1000), requests * retriesPerRequest) + options.ratio * requests;
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

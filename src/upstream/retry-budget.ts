// Retry throttling per upstream, after gRPC's `retryThrottling` (gRFC A6): a
// bucket of `maxTokens` that every failed attempt drains by one and every
// success refills by `tokenRatio`; no retry is sent while the bucket is at
// half or below. A quiet service can still retry (the bucket starts full), a
// partial failure that retries absorb keeps it filled, and in a total outage
// each instance stops retrying after about `maxTokens / 2` failures, whatever
// the number of instances: the load a fleet adds stays bounded as it grows.
// A rate floor (retries per second per instance, Finagle's and this
// library's former budget) multiplies with the fleet instead (DESIGN.md §18).

export interface RetryBudgetOptions {
  /** The bucket's size; retries stop while it holds half of this or less. Default `10` (gRPC's example). `0` refuses every retry. */
  maxTokens: number;
  /** Tokens a successful attempt puts back. Default `0.1` (gRPC's example): sustained, about one retry per ten successes. */
  tokenRatio: number;
}

export class RetryBudget {
  #tokens: number;

  constructor(readonly options: Readonly<RetryBudgetOptions>) {
    this.#tokens = options.maxTokens;
  }

  /** Tokens in the bucket now. */
  get tokens(): number {
    return this.#tokens;
  }

  /** An attempt failed in a way that says the upstream is in trouble. */
  recordFailure(): void {
    this.#tokens = Math.max(0, this.#tokens - 1);
  }

  /** An attempt succeeded. */
  recordSuccess(): void {
    this.#tokens = Math.min(this.options.maxTokens, this.#tokens + this.options.tokenRatio);
  }

  /** Whether a retry may be sent now. */
  allowsRetry(): boolean {
    return this.#tokens > this.options.maxTokens / 2;
  }
}

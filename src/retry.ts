// The retry loop: p-retry runs it (counting, AbortError, never retrying a
// programmer's TypeError); the proxy decides each retry and its delay, because
// that depends on Retry-After, the deadline and the budget, which p-retry's
// own backoff cannot see. p-retry's own delay is therefore set to zero.

import { setTimeout as sleep } from 'node:timers/promises';
import pRetry from 'p-retry';

/** Carries a failed outcome through p-retry. */
class RetryableOutcome<T> extends Error {
  readonly outcome: T;

  constructor(outcome: T) {
    super('retryable attempt failure');
    this.name = 'RetryableOutcome';
    this.outcome = outcome;
  }
}

export interface RetryLoop<T> {
  /** Retries after the first attempt. */
  readonly retries: number;
  /** Runs attempt `n` (1 for the first). Never rejects. */
  attempt(n: number): Promise<T>;
  /** Whether `outcome` is a failure that may be worth another attempt (cheap, pure). */
  isCandidate(outcome: T): boolean;
  /** For a candidate with retries left: the delay before attempt `n + 1`, or `null` to stop. May take from a budget and report. */
  plan(outcome: T, n: number): number | null;
  /** Aborted when the exchange is cancelled; the backoff sleep ends with it. */
  signal(): AbortSignal;
}

/** Runs attempts until one is not a retry candidate, the plan says stop, or retries run out. Resolves with the last outcome. */
export async function runWithRetries<T>(loop: RetryLoop<T>): Promise<T> {
  let last: T | undefined;
  try {
    return await pRetry(
      async (n) => {
        last = await loop.attempt(n);
        if (loop.isCandidate(last)) throw new RetryableOutcome(last);
        return last;
      },
      {
        retries: loop.retries,
        minTimeout: 0,
        shouldRetry: async ({ error, attemptNumber }) => {
          if (!(error instanceof RetryableOutcome)) return false;
          const delay = loop.plan(error.outcome as T, attemptNumber);
          if (delay === null) return false;
          if (delay > 0) await sleep(delay, undefined, { signal: loop.signal() });
          return true;
        },
      },
    );
  } catch (error) {
    // Retries exhausted, refused, or the wait was cancelled: the last
    // attempt's outcome is the answer. Anything else is a bug.
    if (last === undefined) throw error;
    return last;
  }
}

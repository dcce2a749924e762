// The retry rules as tables: which failures may be retried for which
// methods, the backoff curve, Retry-After parsing and the budget's arithmetic.

import { describe, expect, it } from 'vitest';
import type { FailureCode, Phase } from '../src/index.js';
import { RetryBudget } from '../src/upstream/retry-budget.js';
import { backoffDelay, isRetryable, parseRetryAfter } from '../src/policy/retry-policy.js';

const rules: [FailureCode, Phase | null, boolean, boolean][] = [
  // code, phase, idempotent, retryable
  ['UPSTREAM_DNS_FAILED', 'connect', true, true],
  ['UPSTREAM_DNS_FAILED', 'connect', false, true],
  ['UPSTREAM_UNREACHABLE', 'connect', false, true],
  ['UPSTREAM_CONNECT_REFUSED', 'connect', false, true],
  ['UPSTREAM_CONNECT_TIMEOUT', 'connect', false, true],
  ['UPSTREAM_RESET', 'connect', false, true],
  ['UPSTREAM_RESET', 'request', false, false],
  ['UPSTREAM_RESET', 'response', false, false],
  ['UPSTREAM_RESET', 'response', true, true],
  ['UPSTREAM_RESPONSE_TIMEOUT', 'response', true, false],
  ['UPSTREAM_RESPONSE_TIMEOUT', 'response', false, false],
  ['UPSTREAM_BAD_RESPONSE', 'response', true, true],
  ['UPSTREAM_BAD_RESPONSE', 'response', false, false],
  ['UPSTREAM_STATUS', 'response', true, true],
  ['UPSTREAM_STATUS', 'response', false, false],
  ['UPSTREAM_TLS_FAILED', 'connect', true, false],
  ['UPSTREAM_TLS_FAILED', 'connect', false, false],
  ['UPSTREAM_RESPONSE_INCOMPLETE', 'body', true, false],
  ['CIRCUIT_OPEN', null, true, false],
  ['UPSTREAM_OVERLOADED', null, true, false],
  ['PROXY_INTERNAL_ERROR', 'connect', true, false],
  ['REQUEST_INVALID', null, true, false],
];

describe('isRetryable', () => {
  it.each(rules)('%s in phase %s, idempotent %s → %s', (code, phase, idempotent, expected) => {
    expect(isRetryable(code, phase, idempotent)).toBe(expected);
  });

  it('a response timeout is retried only on a host the request has not tried, and only when idempotent', () => {
    expect(isRetryable('UPSTREAM_RESPONSE_TIMEOUT', 'response', true, true)).toBe(true);
    expect(isRetryable('UPSTREAM_RESPONSE_TIMEOUT', 'response', false, true)).toBe(false);
    expect(isRetryable('UPSTREAM_RESET', 'response', true, false)).toBe(true);
  });
});

describe('backoffDelay', () => {
  const options = { minDelay: 50, maxDelay: 1000, factor: 2, jitter: false };

  it('grows exponentially and stops at maxDelay', () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, options))).toStrictEqual([50, 100, 200, 400, 800, 1000]);
  });

  it('spreads jitter over the upper half of the nominal delay', () => {
    const jittered = { ...options, jitter: true };
    expect(backoffDelay(3, jittered, () => 0)).toBe(100);
    expect(backoffDelay(3, jittered, () => 0.5)).toBe(150);
    expect(backoffDelay(3, jittered, () => 0.999999)).toBe(200);
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('Sat, 21 Nov 2026 10:00:00 GMT');

  it.each([
    ['5', 5000],
    ['0', 0],
    [' 12 ', 12000],
    ['Sat, 21 Nov 2026 10:00:03 GMT', 3000],
    ['Sat, 21 Nov 2026 09:59:00 GMT', 0],
    ['-1', null],
    ['1.5', null],
    ['soon', null],
    ['Saturday, 21-Nov-26 10:00:03 GMT', null],
    [undefined, null],
  ])('%s → %s', (value, expected) => {
    expect(parseRetryAfter(value, now)).toBe(expected);
  });
});

describe('RetryBudget: gRPC retry throttling', () => {
  const options = { maxTokens: 10, tokenRatio: 0.1 };

  it('starts full: a quiet upstream can retry at once', () => {
    const budget = new RetryBudget(options);
    expect(budget.tokens).toBe(10);
    expect(budget.allowsRetry()).toBe(true);
  });

  it('each failure drains one token; at half the bucket or below, no retry', () => {
    const budget = new RetryBudget(options);
    const allowed: boolean[] = [];
    for (let i = 0; i < 7; i += 1) {
      budget.recordFailure();
      allowed.push(budget.allowsRetry());
    }
    // 9, 8, 7, 6 tokens: allowed; 5 (= half), 4, 3: not.
    expect(allowed).toStrictEqual([true, true, true, true, false, false, false]);
  });

  it('successes refill by tokenRatio, up to maxTokens: ten successes buy back one failure', () => {
    const budget = new RetryBudget(options);
    for (let i = 0; i < 5; i += 1) budget.recordFailure();
    expect(budget.allowsRetry()).toBe(false);
    for (let i = 0; i < 10; i += 1) budget.recordSuccess();
    expect(budget.tokens).toBeCloseTo(6, 10);
    expect(budget.allowsRetry()).toBe(true);
    for (let i = 0; i < 100; i += 1) budget.recordSuccess();
    expect(budget.tokens).toBe(10);
  });

  it('never goes below 0, and a bucket of 0 refuses every retry', () => {
    const budget = new RetryBudget(options);
    for (let i = 0; i < 50; i += 1) budget.recordFailure();
    expect(budget.tokens).toBe(0);
    expect(new RetryBudget({ maxTokens: 0, tokenRatio: 0.1 }).allowsRetry()).toBe(false);
  });

  it('a total outage: one instance retries about maxTokens / 2 times in all, however long it lasts', () => {
    const budget = new RetryBudget(options);
    let retries = 0;
    for (let request = 0; request < 1000; request += 1) {
      // Each attempt fails; up to two retries while the bucket allows.
      budget.recordFailure();
      for (let retry = 0; retry < 2 && budget.allowsRetry(); retry += 1) {
        retries += 1;
        budget.recordFailure();
      }
    }
    expect(retries).toBe(3);
  });
});

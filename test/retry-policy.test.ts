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

describe('RetryBudget', () => {
  const options = { ratio: 0.2, minRetriesPerSecond: 0, window: 10_000 };

  it('allows retries up to the ratio of requests in the window', () => {
    let now = 0;
    const budget = new RetryBudget(10_000, () => now);
    for (let i = 0; i < 100; i += 1) budget.recordRequest();
    const granted = Array.from({ length: 30 }, () => budget.tryRetry(options)).filter(Boolean).length;
    expect(granted).toBe(20);
    now = 11_000;
    expect(budget.tryRetry(options)).toBe(false);
    budget.recordRequest();
    budget.recordRequest();
    budget.recordRequest();
    budget.recordRequest();
    budget.recordRequest();
    expect(budget.tryRetry(options)).toBe(true);
  });

  it('keeps a floor so a quiet upstream can still retry', () => {
    const budget = new RetryBudget(10_000, () => 0);
    const floor = { ratio: 0.2, minRetriesPerSecond: 0.5, window: 10_000 };
    expect(Array.from({ length: 8 }, () => budget.tryRetry(floor)).filter(Boolean).length).toBe(5);
  });

  it('forgets requests and retries that slid out of the window', () => {
    let now = 0;
    const budget = new RetryBudget(10_000, () => now);
    for (let i = 0; i < 10; i += 1) budget.recordRequest();
    expect(budget.tryRetry(options)).toBe(true);
    expect(budget.tryRetry(options)).toBe(true);
    expect(budget.tryRetry(options)).toBe(false);
    now = 5_000;
    for (let i = 0; i < 10; i += 1) budget.recordRequest();
    expect(budget.tryRetry(options)).toBe(true);
    expect(budget.tryRetry(options)).toBe(true);
    expect(budget.tryRetry(options)).toBe(false);
    now = 10_500;
    // The first 10 requests and their 2 retries have left the window.
    expect(budget.tryRetry(options)).toBe(false);
    now = 15_500;
    expect(budget.tryRetry(options)).toBe(false);
  });
});

// When a failed attempt may be tried again, and after how long. Pure
// functions: the safety rules of RFC 9110 §9.2.2 as a table, the backoff, and
// Retry-After parsing.

import type { Phase } from '../contract/classify.js';
import type { FailureCode } from '../contract/failures.js';

/** Classes worth another attempt for an idempotent request. */
const RETRYABLE = new Set<FailureCode>([
  'UPSTREAM_DNS_FAILED',
  'UPSTREAM_UNREACHABLE',
  'UPSTREAM_CONNECT_REFUSED',
  'UPSTREAM_CONNECT_TIMEOUT',
  'UPSTREAM_RESET',
  'UPSTREAM_RESPONSE_TIMEOUT',
  'UPSTREAM_BAD_RESPONSE',
  'UPSTREAM_STATUS',
]);

/** Classes that, in the connect phase, prove no byte of the request reached the upstream. */
const BEFORE_ANY_BYTE = new Set<FailureCode>([
  'UPSTREAM_DNS_FAILED',
  'UPSTREAM_UNREACHABLE',
  'UPSTREAM_CONNECT_REFUSED',
  'UPSTREAM_CONNECT_TIMEOUT',
  'UPSTREAM_RESET',
]);

/**
 * Whether a failure may be retried. Idempotent methods retry every retryable
 * class. Any other method retries only when the attempt failed before the
 * request was written. TLS failures are never retried: they would fail the same way.
 *
 * A response timeout is retried only on a host this request has not tried
 * (`untriedHost`): a host that held a request for the whole
 * `timeout.response` will likely hold the next one too, and retrying it there
 * would make the worst case three full timeouts and three upstream requests.
 */
export function isRetryable(code: FailureCode, phase: Phase | null, idempotent: boolean, untriedHost = false): boolean {
  if (!RETRYABLE.has(code)) return false;
  if (code === 'UPSTREAM_RESPONSE_TIMEOUT' && !untriedHost) return false;
  if (idempotent) return true;
  return sentNothing(code, phase);
}

/** Whether a failure proves that no byte of the request reached the upstream (so another attempt adds no load to it). */
export function sentNothing(code: FailureCode, phase: Phase | null): boolean {
  return phase === 'connect' && BEFORE_ANY_BYTE.has(code);
}

export interface BackoffOptions {
  readonly minDelay: number;
  readonly maxDelay: number;
  readonly factor: number;
  readonly jitter: boolean;
}

/**
 * The wait before retry number `retry` (1 for the first retry): exponential
 * from `minDelay`, capped at `maxDelay`, and with jitter spread over the upper
 * half ("equal jitter"), so retries from many clients do not arrive together
 * yet never come sooner than half the nominal delay.
 */
export function backoffDelay(retry: number, options: BackoffOptions, random: () => number = Math.random): number {
  const nominal = Math.min(options.maxDelay, options.minDelay * options.factor ** (retry - 1));
  if (!options.jitter) return Math.round(nominal);
  return Math.round(nominal / 2 + random() * (nominal / 2));
}

/**
 * A Retry-After value (RFC 9110 §10.2.3) in milliseconds from `now`: delay
 * seconds or an HTTP date. `null` when absent or unreadable.
 */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | null {
  if (value === null || value === undefined) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  if (!/^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(trimmed)) return null;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return null;
  return Math.max(0, date - now);
}

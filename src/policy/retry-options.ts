// The `retry` option: when and how a failed attempt is tried again (retry
// throttling included), its defaults and its check.

import { checkKeys, duration, fail, HEADER_NAME, isPlainObject, optionalString, positive } from '../option-checks.js';
import type { RetryBudgetOptions } from '../upstream/retry-budget.js';

/** When and how failed attempts are tried again. See docs/timeouts-retries-breaker.md for the safety rules. */
export interface RetryOptions {
  /** Retries after the first attempt. Default `2` (three attempts at most). */
  retries: number;
  /** The first backoff delay in ms. Default `50`. */
  minDelay: number;
  /** The longest backoff delay in ms, and the longest `Retry-After` honoured without a `total` deadline. Default `1000`. */
  maxDelay: number;
  /** Growth of the delay per retry. Default `2`. */
  factor: number;
  /** Spread each delay randomly over its upper half. Default `true`. */
  jitter: boolean;
  /** Methods retried after the request was sent (the idempotent ones). Others retry only when nothing was sent. Default GET, HEAD, OPTIONS, TRACE, PUT, DELETE. */
  methods: readonly string[];
  /** Request bodies up to this size (bytes, by Content-Length, or chunked ones that end within `limits.requestBufferBytes`) are buffered so they can be re-sent; larger bodies stream and are not retried. Default `1048576` (1 MiB). */
  maxBodyBytes: number;
  /** Retry throttling per upstream (gRPC's token bucket), or `false` for none. Default `{ maxTokens: 10, tokenRatio: 0.1 }`. */
  budget: RetryBudgetOptions | false;
  /** The header that tells the upstream the attempt number (1, 2, …), or `false`. Default `'x-attempt-count'`. */
  attemptHeader: string | false;
}

export const RETRY_DEFAULTS = Object.freeze({
  retries: 2,
  minDelay: 50,
  maxDelay: 1_000,
  factor: 2,
  jitter: true,
  methods: Object.freeze(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']),
  maxBodyBytes: 1024 * 1024,
  budget: Object.freeze({ maxTokens: 10, tokenRatio: 0.1 }),
  attemptHeader: 'x-attempt-count',
});

export interface ResolvedRetry {
  readonly retries: number;
  readonly minDelay: number;
  readonly maxDelay: number;
  readonly factor: number;
  readonly jitter: boolean;
  readonly methods: ReadonlySet<string>;
  readonly maxBodyBytes: number;
  readonly budget: Readonly<RetryBudgetOptions> | null;
  readonly attemptHeader: string | null;
}

/** The attempt header the proxy owns, whose client-sent copy is dropped even when retries are off. */
export function ownAttemptHeader(config: { readonly retry: ResolvedRetry | null }): string {
  return config.retry?.attemptHeader ?? RETRY_DEFAULTS.attemptHeader;
}

function resolveBudget(value: unknown): RetryBudgetOptions | null {
  const defaults = RETRY_DEFAULTS.budget;
  if (value === false) return null;
  if (value === undefined) return { ...defaults };
  if (!isPlainObject(value)) fail('retry.budget', 'an object like { maxTokens, tokenRatio } or false', value);
  for (const old of ['ratio', 'minRetriesPerSecond', 'window']) {
    if (old in value) {
      throw new TypeError(
        `\`retry.budget.${old}\` is gone: the retry budget is now a token bucket, \`{ maxTokens, tokenRatio }\` (gRPC's retry throttling), ` +
          'because a per-instance floor of retries per second multiplies with the number of instances. See docs/timeouts-retries-breaker.md, Retries.',
      );
    }
  }
  checkKeys('retry.budget', value, ['maxTokens', 'tokenRatio']);
  return {
    maxTokens: positive('retry.budget.maxTokens', value.maxTokens, defaults.maxTokens, 'a number from 0 to 1000', (n) => n >= 0 && n <= 1000),
    tokenRatio: positive('retry.budget.tokenRatio', value.tokenRatio, defaults.tokenRatio, 'a number above 0, up to 1', (n) => n > 0 && n <= 1),
  };
}

const METHOD = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export function resolveRetry(value: unknown): ResolvedRetry | null {
  const defaults = RETRY_DEFAULTS;
  if (value === false) return null;
  if (value !== undefined && !isPlainObject(value)) fail('retry', 'an object of retry options or false', value);
  const options: Record<string, unknown> = value ?? {};
  checkKeys('retry', options, ['retries', 'minDelay', 'maxDelay', 'factor', 'jitter', 'methods', 'maxBodyBytes', 'budget', 'attemptHeader']);
  const retries = positive('retry.retries', options.retries, defaults.retries, 'a whole number from 0 to 10', (n) => Number.isInteger(n) && n >= 0 && n <= 10);
  const minDelay = duration('retry.minDelay', options.minDelay, defaults.minDelay);
  const maxDelay = duration('retry.maxDelay', options.maxDelay, defaults.maxDelay);
  if (maxDelay < minDelay) fail('retry.maxDelay', `at least \`retry.minDelay\` (${minDelay})`, maxDelay);
  const factor = positive('retry.factor', options.factor, defaults.factor, 'a number from 1 to 10', (n) => n >= 1 && n <= 10);
  if (options.jitter !== undefined && typeof options.jitter !== 'boolean') fail('retry.jitter', 'a boolean', options.jitter);
  let methods: readonly string[] = defaults.methods;
  if (options.methods !== undefined) {
    if (!Array.isArray(options.methods) || !options.methods.every((m) => typeof m === 'string' && METHOD.test(m))) {
      fail('retry.methods', 'an array of HTTP method names', options.methods);
    }
    methods = options.methods as string[];
  }
  const maxBodyBytes = positive('retry.maxBodyBytes', options.maxBodyBytes, defaults.maxBodyBytes, 'a whole number of bytes from 0 to 67108864', (n) => Number.isInteger(n) && n >= 0 && n <= 64 * 1024 * 1024);
  let attemptHeader: string | null = defaults.attemptHeader;
  if (options.attemptHeader === false) attemptHeader = null;
  else if (options.attemptHeader !== undefined) {
    attemptHeader = optionalString('retry.attemptHeader', options.attemptHeader, HEADER_NAME, 'a header name or false')?.toLowerCase() ?? null;
  }
  return {
    retries,
    minDelay,
    maxDelay,
    factor,
    jitter: options.jitter ?? defaults.jitter,
    methods: new Set(methods.map((m) => m.toUpperCase())),
    maxBodyBytes,
    budget: resolveBudget(options.budget),
    attemptHeader,
  };
}

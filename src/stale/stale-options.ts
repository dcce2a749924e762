// The `staleIfError` option: what stale on error keeps and for how long,
// its defaults and its check.

import { checkKeys, fail, isPlainObject, positive } from '../option-checks.js';
import { DEFAULT_STALE_MAX_BYTES, MemoryStaleStore, type StaleStore } from './store.js';

/** `staleIfError`: keep the last good responses and answer failures with them. */
export interface StaleIfErrorOptions {
  /**
   * How long past its freshness lifetime a kept response may still stand in
   * for a failure, in milliseconds, when its origin said no `stale-if-error`.
   * The client's `max-stale` may allow longer. Default `300000` (5 minutes).
   */
  maxStale: number;
  /**
   * `false`: an origin's `stale-if-error=N` is the window for its responses
   * (RFC 5861), shorter or longer than `maxStale`, and the client's
   * `max-stale` cannot pass it. `true`: `maxStale` (and the client's
   * `max-stale`) may also serve past it. Default `false`.
   */
  maxStaleOverridesOrigin: boolean;
  /** The largest body kept, in bytes; a larger response streams on and is not kept. Default `1048576` (1 MiB). */
  maxEntryBytes: number;
  /**
   * The default store's bound in bytes, and the bound on the bytes being
   * copied from responses still streaming (copies past it are given up).
   * Default `33554432` (32 MiB).
   */
  maxBytes: number;
  /** Where responses are kept. Default: a `MemoryStaleStore` of `maxBytes`, one per proxy. */
  store: StaleStore;
}

export type ResolvedStaleIfError = Readonly<StaleIfErrorOptions>;

export const STALE_DEFAULTS = Object.freeze({ maxStale: 300_000, maxStaleOverridesOrigin: false, maxEntryBytes: 1024 * 1024, maxBytes: DEFAULT_STALE_MAX_BYTES });

export function resolveStaleIfError(value: unknown): ResolvedStaleIfError | null {
  const defaults = STALE_DEFAULTS;
  if (value === undefined || value === false) return null;
  if (value !== true && !isPlainObject(value)) fail('staleIfError', 'true, false or an object like { maxStale, maxStaleOverridesOrigin, maxEntryBytes, maxBytes, store }', value);
  const options: Record<string, unknown> = value === true ? {} : value;
  checkKeys('staleIfError', options, ['maxStale', 'maxStaleOverridesOrigin', 'maxEntryBytes', 'maxBytes', 'store']);
  const maxStale = positive('staleIfError.maxStale', options.maxStale, defaults.maxStale, 'a number of milliseconds from 0 to 2147483647', (n) => n >= 0 && n <= 2_147_483_647);
  const { maxStaleOverridesOrigin = defaults.maxStaleOverridesOrigin } = options;
  if (typeof maxStaleOverridesOrigin !== 'boolean') fail('staleIfError.maxStaleOverridesOrigin', 'a boolean', maxStaleOverridesOrigin);
  const maxBytes = positive('staleIfError.maxBytes', options.maxBytes, defaults.maxBytes, 'a whole number of bytes (1 or more)', (n) => Number.isSafeInteger(n) && n >= 1);
  const maxEntryBytes = positive('staleIfError.maxEntryBytes', options.maxEntryBytes, Math.min(defaults.maxEntryBytes, maxBytes), 'a whole number of bytes (1 or more)', (n) => Number.isSafeInteger(n) && n >= 1);
  if (maxEntryBytes > maxBytes) fail('staleIfError.maxEntryBytes', `at most \`staleIfError.maxBytes\` (${maxBytes})`, maxEntryBytes);
  const { store } = options;
  if (store !== undefined && !(typeof store === 'object' && store !== null && ['get', 'set', 'delete'].every((method) => typeof (store as Record<string, unknown>)[method] === 'function'))) {
    fail('staleIfError.store', 'a store with get, set and delete methods', store);
  }
  return Object.freeze({ maxStale, maxStaleOverridesOrigin, maxEntryBytes, maxBytes, store: (store as StaleIfErrorOptions['store'] | undefined) ?? new MemoryStaleStore({ maxBytes }) });
}

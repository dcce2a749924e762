// The observation hooks (`hooks`): the events they are told, and the check
// of the option. Hooks only observe; the exchange calls them.

import type { Phase } from '../contract/classify.js';
import type { FailureCode, ProxyStatusError } from '../contract/failures.js';
import { checkKeys, fail, isPlainObject } from '../option-checks.js';
import type { BreakerStateChange } from '../upstream/breaker.js';
import type { DiscoveryEvent } from '../upstream/discovery.js';
import type { HostStateChange, PanicChange } from '../upstream/group.js';

/** What every hook event says about the request and the failure it reports. May contain internal detail; never send it to a client. */
export interface ExchangeEvent {
  /** The public failure code. */
  readonly code: FailureCode;
  /** The RFC 9209 error type sent in `Proxy-Status` (or that would have been). */
  readonly proxyStatus: ProxyStatusError | null;
  /** Where the attempt was when it failed. */
  readonly phase: Phase | null;
  /** The upstream's public name, or its origin when no name was given. */
  readonly upstream: string;
  /** The origin of the host the event is about (the latest attempt's; the first host before any): the host id `onHostStateChange`, the snapshot's `origin` and the `resilient_proxy.host` metric use. For logs, never for clients. */
  readonly target: string;
  readonly requestId: string;
  readonly method: string;
  /** The path sent (or to be sent) upstream. */
  readonly path: string;
  /** The upstream's status, for `UPSTREAM_STATUS`. */
  readonly receivedStatus: number | null;
  /** Present on the failures of a WebSocket upgrade's handshake (`proxy.upgrade`). */
  readonly upgrade?: true;
  /** The underlying error, when there is one. For logs only. */
  readonly error: unknown;
}

/**
 * Why a failed request was not tried again:
 * - `disabled`: `retry: false` or `retries: 0`;
 * - `not-retryable`: a failure another attempt would not fix (TLS, a 4xx, the proxy's own fault, a response timeout with no other host);
 * - `not-idempotent`: the method is not in `retry.methods` and the request may have reached the upstream;
 * - `body-not-replayable`: the body was streamed (over `retry.maxBodyBytes`);
 * - `retries-exhausted`: every retry was made;
 * - `budget`: the retry budget was spent;
 * - `retry-after`: the upstream's `Retry-After` is longer than the request can wait, and no other host could take it;
 * - `deadline`: the backoff would end past `timeout.total`;
 * - `refused`: the circuit is open or the upstream at capacity;
 * - `headers-sent`: the response had started.
 */
export type NoRetryReason =
  | 'disabled'
  | 'not-retryable'
  | 'not-idempotent'
  | 'body-not-replayable'
  | 'retries-exhausted'
  | 'budget'
  | 'retry-after'
  | 'deadline'
  | 'refused'
  | 'headers-sent';

/** What the `onFailure` hook is told, once per failed request. */
export interface FailureEvent extends ExchangeEvent {
  /** Number of upstream attempts made. */
  readonly attempts: number;
  /** Why no further attempt was made; absent when the failure came before any attempt (a bad request, a hook's failure). */
  readonly noRetry?: NoRetryReason;
  /** The status sent to the client, or `null` when the client connection was destroyed. */
  readonly statusCode: number | null;
  /**
   * Set only by a hook wrapped in `foldRefusals`, on a refusal (`CIRCUIT_OPEN`,
   * `UPSTREAM_OVERLOADED`): how many refusals this event stands for, itself and
   * those folded into it since the previous one reported.
   */
  readonly refusals?: number;
}

/** What the `onRetry` hook is told before each retry. */
export interface RetryEvent extends ExchangeEvent {
  /** The number of the attempt that failed (1 for the first). */
  readonly attempt: number;
  /** How long the proxy waits before the next attempt, in ms. */
  readonly delay: number;
}

/** What the `onStale` hook is told: the failure a kept response hid from the client. */
export interface StaleEvent extends ExchangeEvent {
  /** Number of upstream attempts made. */
  readonly attempts: number;
  /** The status of the kept response sent in place of the error. */
  readonly statusCode: number;
  /** Its `Age`, in seconds. */
  readonly age: number;
}

/** Observers. They only observe: a hook that throws is caught and ignored. */
export interface ProxyHooks {
  /** Called once for each request that ends in a failure (including after headers were sent). */
  onFailure?: (event: FailureEvent) => void;
  /** Called before each retry, with the failure that caused it and the delay. */
  onRetry?: (event: RetryEvent) => void;
  /** Called when the upstream's circuit changes state (`closed`, `open`, `halfOpen`). */
  onBreakerStateChange?: (change: BreakerStateChange) => void;
  /** Called when a host of the group changes state (`healthy`, `failing`, `ejected`, `unhealthy`), with the reason. */
  onHostStateChange?: (change: HostStateChange) => void;
  /** Called when the group enters panic mode (fewer than half its hosts in rotation: every host takes traffic) and when it leaves it. */
  onPanic?: (change: PanicChange) => void;
  /** Called when `staleIfError` answered a failure with a kept response (`onFailure` is then not called). */
  onStale?: (event: StaleEvent) => void;
  /** Called when a discovered group's hosts changed, on every failed refresh (the hosts stay as they were), and when refreshes recover. */
  onDiscovery?: (event: DiscoveryEvent) => void;
}

const HOOKS = ['onFailure', 'onRetry', 'onBreakerStateChange', 'onHostStateChange', 'onPanic', 'onStale', 'onDiscovery'] as const;

export function resolveHooks(value: unknown): ProxyHooks {
  if (value === undefined) return {};
  if (!isPlainObject(value)) fail('hooks', 'an object of functions', value);
  checkKeys('hooks', value, HOOKS);
  const hooks: Record<string, unknown> = {};
  for (const name of HOOKS) {
    if (value[name] === undefined) continue;
    if (typeof value[name] !== 'function') fail(`hooks.${name}`, 'a function', value[name]);
    hooks[name] = value[name];
  }
  // Each value was checked to be a function above.
  return hooks;
}

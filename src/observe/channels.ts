// The proxy's diagnostics_channel events: every channel is created once, here,
// at load. A publish site checks `hasSubscribers` before it builds a message,
// so with nobody listening an event costs one property read. Subscribers run
// synchronously at the publish site, in the request's async context (an
// OpenTelemetry subscriber sees the incoming request's span as active).
// A subscriber that throws is Node's business: its error is rethrown on
// `process.nextTick` (an uncaught exception), as for every diagnostics channel.

import { channel } from 'node:diagnostics_channel';
import type { IncomingMessage } from 'node:http';
import type { FailureCode } from '../contract/failures.js';

/** The names of the channels the proxy publishes on. Stable: part of the public API. */
export const DIAGNOSTICS_CHANNELS = Object.freeze({
  /** One client request reached the proxy (`ExchangeMessage`). */
  exchangeStart: 'resilient-proxy:exchange:start',
  /** It ended: the same `ExchangeMessage` object, with `outcome`, `statusCode`, `code`, `attempts` and `duration` set. */
  exchangeEnd: 'resilient-proxy:exchange:end',
  /** One upstream attempt is about to be sent (`AttemptMessage`; its `headers` may still be changed). */
  attemptStart: 'resilient-proxy:attempt:start',
  /** It ended: the same `AttemptMessage` object, with `outcome`, `statusCode`, `code`, `error` and `duration` set. */
  attemptEnd: 'resilient-proxy:attempt:end',
  /** A failed attempt will be retried (`RetryMessage`, the `hooks.onRetry` event). */
  retry: 'resilient-proxy:retry',
  /** The proxy refused to call the upstream: circuit open or capacity reached (`RefusalMessage`). */
  refusal: 'resilient-proxy:refusal',
  /** A retry the retry budget refused (`BudgetExhaustedMessage`). */
  budgetExhausted: 'resilient-proxy:budget:exhausted',
  /** An upstream's circuit changed state (`BreakerStateChange`), once per change, whatever the number of proxies. */
  breakerState: 'resilient-proxy:breaker:state',
  /** A host of a group changed state (`HostStateChange`), once per change. */
  hostState: 'resilient-proxy:host:state',
  /** A group entered or left panic mode (`PanicChange`), once per change. */
  groupPanic: 'resilient-proxy:group:panic',
  /** `staleIfError` answered a failure with a kept response (`StaleMessage`, the `hooks.onStale` event). */
  stale: 'resilient-proxy:stale',
  /** A discovered group's hosts changed, a refresh failed (the hosts stay), or refreshes recovered (`DiscoveryEvent`). */
  discovery: 'resilient-proxy:discovery',
  /** A shared stale store (`RedisStaleStore`) changed state: ready, down, or dropping writes (`StaleStoreStateChange`). */
  staleStore: 'resilient-proxy:stale-store:state',
});

export const exchangeStart = channel(DIAGNOSTICS_CHANNELS.exchangeStart);
export const exchangeEnd = channel(DIAGNOSTICS_CHANNELS.exchangeEnd);
export const attemptStart = channel(DIAGNOSTICS_CHANNELS.attemptStart);
export const attemptEnd = channel(DIAGNOSTICS_CHANNELS.attemptEnd);
export const retryChannel = channel(DIAGNOSTICS_CHANNELS.retry);
export const refusalChannel = channel(DIAGNOSTICS_CHANNELS.refusal);
export const budgetExhausted = channel(DIAGNOSTICS_CHANNELS.budgetExhausted);
export const breakerState = channel(DIAGNOSTICS_CHANNELS.breakerState);
export const hostState = channel(DIAGNOSTICS_CHANNELS.hostState);
export const groupPanic = channel(DIAGNOSTICS_CHANNELS.groupPanic);
export const staleChannel = channel(DIAGNOSTICS_CHANNELS.stale);
export const discoveryChannel = channel(DIAGNOSTICS_CHANNELS.discovery);
export const staleStoreChannel = channel(DIAGNOSTICS_CHANNELS.staleStore);

/** How an exchange ended. */
export type ExchangeOutcome =
  /** The upstream's response reached the client whole (whatever its status). */
  | 'delivered'
  /** The error contract (problem+json) was sent. */
  | 'contract'
  /** The response head had gone out: the client connection was cut. */
  | 'cut'
  /** `staleIfError` answered with a kept response. */
  | 'stale'
  /** The client left first: nothing is reported to hooks. */
  | 'client-gone';

/**
 * One client request, from `exchange:start` to `exchange:end`. The end is
 * published with the same object, its end fields filled in (`null` until
 * then), as Node's own tracing channels share one context object. An exchange
 * that started while `exchange:start` and `exchange:end` had no subscriber is
 * not published at its end either.
 */
export interface ExchangeMessage {
  /** The request id: the one sent upstream, in error bodies and from `requestId(req)`. */
  readonly requestId: string;
  /** The upstream's key: its name, or its origin(s). */
  readonly upstream: string;
  readonly method: string;
  /** The path sent (or to be sent) upstream, with its query. '' when it could not be computed. */
  readonly path: string;
  /** The client's request, for subscribers that keep state per request (pino-http's `req.log`). */
  readonly req: IncomingMessage;
  /** A WebSocket handshake (`proxy.upgrade`). */
  readonly upgrade: boolean;
  /** `performance.now()` when the exchange started. */
  readonly startTime: number;
  outcome: ExchangeOutcome | null;
  /** The status the client got (101 for an opened tunnel), or `null` when none was sent. */
  statusCode: number | null;
  /** The failure code for `contract`, `cut` and `stale`; `null` otherwise. */
  code: FailureCode | null;
  /** Upstream attempts made. */
  attempts: number;
  /** Milliseconds from start to end. */
  duration: number | null;
}

/** How an attempt ended. */
export type AttemptEndOutcome =
  /** The response was passed to the client, whole (any status that is not a failure status). */
  | 'delivered'
  /** A status in `failureStatuses` (code `UPSTREAM_STATUS`). */
  | 'status'
  /** A failure: connect, reset, timeout, a cut body… (`code` says which). */
  | 'failed'
  /** Ended by the client leaving; not a failure of the upstream. */
  | 'cancelled';

/**
 * One upstream attempt, from `attempt:start` to `attempt:end` (the same
 * object, its end fields `null` until then). Breaker and capacity refusals
 * are not attempts: they are published on `refusal`.
 */
export interface AttemptMessage {
  readonly requestId: string;
  readonly upstream: string;
  /** The origin of the host the attempt goes to (`http://10.0.0.11:8080`). For operators, never for clients. */
  readonly origin: string;
  readonly method: string;
  /** The path sent upstream, with its query. */
  readonly path: string;
  /** 1 for the first attempt, 2 for the first retry, … */
  readonly attempt: number;
  /**
   * The headers about to be sent, lower-case names: mutable at `attempt:start`
   * (set `traceparent` here). The object is the exchange's own and is reused by
   * its later attempts; what is in it when `attempt:start` returns is sent.
   */
  readonly headers: Record<string, string | string[]>;
  /** A WebSocket handshake. */
  readonly upgrade: boolean;
  /** A hedge: sent while an earlier attempt of the request still waited for its head (`hedge` option). */
  hedge: boolean;
  /** `performance.now()` when the attempt started. */
  readonly startTime: number;
  outcome: AttemptEndOutcome | null;
  /** The upstream's status, when a response head arrived. */
  statusCode: number | null;
  /** The failure code of a `status` or `failed` attempt. */
  code: FailureCode | null;
  /** The underlying error of a `failed` or `cancelled` attempt. For logs only. */
  error: unknown;
  /** Milliseconds from start to end. */
  duration: number | null;
}

/** `refusal`: the proxy answered without calling the upstream. */
export interface RefusalMessage {
  readonly upstream: string;
  readonly requestId: string;
  readonly method: string;
  readonly path: string;
  readonly reason: 'circuit_open' | 'capacity';
  readonly code: 'CIRCUIT_OPEN' | 'UPSTREAM_OVERLOADED';
  /** Attempts already made by this request (0 when refused on arrival). */
  readonly attempts: number;
  readonly upgrade: boolean;
}

/** `budget:exhausted`: a failed attempt that would have been retried, but the retry budget was spent. */
export interface BudgetExhaustedMessage {
  readonly upstream: string;
  readonly requestId: string;
  readonly method: string;
  readonly path: string;
  /** The failure of the attempt that is not retried. */
  readonly code: FailureCode;
  /** The number of that attempt. */
  readonly attempt: number;
  readonly upgrade: boolean;
}

export function exchangeMessage(requestId: string, upstream: string, method: string, path: string, req: IncomingMessage, upgrade: boolean): ExchangeMessage {
  return { requestId, upstream, method, path, req, upgrade, startTime: performance.now(), outcome: null, statusCode: null, code: null, attempts: 0, duration: null };
}

/** Fills in the end of an exchange and publishes it; once per exchange. */
export function endExchange(message: ExchangeMessage, outcome: ExchangeOutcome, statusCode: number | null, code: FailureCode | null, attempts: number): void {
  if (message.outcome !== null) return;
  message.outcome = outcome;
  message.statusCode = statusCode;
  message.code = code;
  message.attempts = attempts;
  message.duration = performance.now() - message.startTime;
  if (exchangeEnd.hasSubscribers) exchangeEnd.publish(message);
}

export function attemptMessage(
  requestId: string,
  upstream: string,
  origin: string,
  method: string,
  path: string,
  attempt: number,
  headers: Record<string, string | string[]>,
  upgrade: boolean,
): AttemptMessage {
  return { requestId, upstream, origin, method, path, attempt, headers, upgrade, hedge: false, startTime: performance.now(), outcome: null, statusCode: null, code: null, error: null, duration: null };
}

/** Fills in the end of an attempt and publishes it. */
export function endAttempt(message: AttemptMessage, outcome: AttemptEndOutcome, statusCode: number | null, code: FailureCode | null, error: unknown): void {
  message.outcome = outcome;
  message.statusCode = statusCode;
  message.code = code;
  message.error = error;
  message.duration = performance.now() - message.startTime;
  if (attemptEnd.hasSubscribers) attemptEnd.publish(message);
}

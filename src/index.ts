export { createProxy, type ResilientProxy, type NextFunction } from './proxy.js';
export {
  DEFAULTS,
  type ProxyOptions,
  type TimeoutOptions,
  type ProxyHooks,
  type FailureEvent,
  type ExchangeEvent,
  type StatusOption,
  type RetryOptions,
  type RetryEvent,
} from './options.js';
export { UpstreamRegistry, defaultRegistry, type UpstreamSnapshot } from './registry.js';
export type { BreakerOptions, BreakerState, BreakerStateChange, BreakerStats } from './breaker.js';
export type { RetryBudgetOptions } from './retry-budget.js';
export { FAILURE_CODES, FAILURES, isFailureCode, rfc9209Status, type FailureCode, type ProxyStatusError } from './failures.js';
export { classifyError, type Classification, type Phase } from './classify.js';
export type { ProblemDetails } from './problem.js';
export { keepRawBody } from './parsed-body.js';
export { requestId } from './headers.js';

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
export { UpstreamRegistry, defaultRegistry, type UpstreamSnapshot } from './upstream/registry.js';
export type { BreakerOptions, BreakerState, BreakerStateChange, BreakerStats } from './upstream/breaker.js';
export type { RetryBudgetOptions } from './upstream/retry-budget.js';
export { FAILURE_CODES, FAILURES, isFailureCode, rfc9209Status, type FailureCode, type ProxyStatusError } from './contract/failures.js';
export { classifyError, type Classification, type Phase } from './contract/classify.js';
export type { ProblemDetails } from './contract/problem.js';
export { keepRawBody } from './exchange/parsed-body.js';
export { requestId } from './exchange/headers.js';

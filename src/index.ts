export { createProxy, type ResilientProxy, type NextFunction } from './proxy.js';
export { DEFAULTS, type ProxyOptions } from './options.js';
export type { TimeoutOptions } from './policy/timeout-options.js';
export type { ExchangeEvent, FailureEvent, NoRetryReason, ProxyHooks, RetryEvent, StaleEvent } from './observe/hooks.js';
export type { StatusOption } from './contract/contract-options.js';
export type { RetryOptions } from './policy/retry-options.js';
export { MemoryStaleStore, type MemoryStaleStoreOptions, type StaleEntry, type StaleResponse, type StaleStore, type StaleVariants } from './stale/store.js';
export type { StaleIfErrorOptions } from './stale/stale-options.js';
export { UpstreamRegistry, defaultRegistry, type UpstreamSnapshot } from './upstream/registry.js';
export type { BreakerOptions, BreakerState, BreakerStateChange, BreakerStats } from './upstream/breaker.js';
export type { RetryBudgetOptions } from './upstream/retry-budget.js';
export type { AdaptiveConcurrencyOptions } from './policy/adaptive-limit.js';
export type { AdaptiveLimitSnapshot } from './policy/adaptive-concurrency.js';
export type { DeadlineOptions } from './policy/deadline.js';
export { FAILURE_CODES, FAILURES, isFailureCode, rfc9209Status, type FailureCode, type ProxyStatusError } from './contract/failures.js';
export { classifyError, type Classification, type Phase } from './contract/classify.js';
export type { ProblemDetails } from './contract/problem.js';
export { keepRawBody } from './exchange/parsed-body.js';
export { requestId } from './exchange/headers.js';
export type { Balance } from './upstream/balancer.js';
export type { HostSnapshot, HostState, HostStateChange, LastFailure, PanicChange } from './upstream/group.js';
export type { HealthCheckOptions } from './upstream/health-check.js';
export type { Discover, DiscoveredTarget, DiscoverTarget, DiscoveryEvent, DiscoverySnapshot } from './upstream/discovery.js';
export type { DnsTarget } from './upstream/dns.js';
export type { OutlierOptions } from './upstream/outlier.js';
export type { UpgradeOptions } from './exchange/upgrade.js';
export type { CookieRewrite, HeaderPatch, PathRewrite } from './exchange/rewrite.js';
export type { TransformContext, TransformResponse } from './exchange/transform.js';
export type { HeaderOptions, RequestHeadersHook, ResponseHeadersHook } from './exchange/rewrite-options.js';
export type { StaticTarget, WeightedTarget } from './upstream/target-options.js';
export {
  DIAGNOSTICS_CHANNELS,
  type AttemptEndOutcome,
  type AttemptMessage,
  type BudgetExhaustedMessage,
  type ExchangeMessage,
  type ExchangeOutcome,
  type RefusalMessage,
} from './observe/channels.js';
export { foldRefusals, type FoldedFailureHook, type FoldRefusalsOptions } from './observe/fold-refusals.js';

// The public options: `ProxyOptions`, composed of each feature's options,
// their defaults (in one constant) and `resolveOptions`. Each feature's types,
// defaults and checks live beside it (`policy/retry-options.ts`,
// `stale/stale-options.ts`, …); options are checked once, at construction,
// copied and frozen: a bad option is a TypeError naming it, and the caller's
// object is never touched.

import type { Dispatcher } from 'undici';
import { CONTRACT_DEFAULTS, resolveFailureStatuses, resolveProxyName, resolveStatus, type StatusOption } from './contract/contract-options.js';
import { LIMIT_DEFAULTS, resolveLimits, type LimitOptions } from './exchange/limit-options.js';
import type { CookieRewrite, HeaderPatch, PathRewrite } from './exchange/rewrite.js';
import {
  headerSides,
  resolveCookieRewrite,
  resolvePathRewrite,
  resolveRequestHeaders,
  resolveResponseHeaders,
  resolveRewriteRedirects,
  resolveTransform,
  REWRITE_DEFAULTS,
  type HeaderOptions,
  type RequestHeadersHook,
  type ResolvedPathRewrite,
  type ResponseHeadersHook,
} from './exchange/rewrite-options.js';
import type { TransformResponse } from './exchange/transform.js';
import { resolveHooks, type ProxyHooks } from './observe/hooks.js';
import { checkKeys, fail, HEADER_NAME, isPlainObject, optionalBoolean, optionalString } from './option-checks.js';
import { ADAPTIVE_DEFAULTS, resolveAdaptiveConcurrency, type AdaptiveConcurrencyOptions } from './policy/adaptive-limit.js';
import { DEADLINE_DEFAULTS, resolveDeadline, type DeadlineOptions } from './policy/deadline.js';
import { HEDGE_DEFAULTS, resolveHedge, type HedgeDelay, type HedgeOptions } from './policy/hedge.js';
import { resolveRetry, RETRY_DEFAULTS, type ResolvedRetry, type RetryOptions } from './policy/retry-options.js';
import { resolveTimeouts, TIMEOUT_DEFAULTS, type ResolvedTimeouts, type TimeoutOptions } from './policy/timeout-options.js';
import { resolveStaleIfError, STALE_DEFAULTS, type ResolvedStaleIfError, type StaleIfErrorOptions } from './stale/stale-options.js';
import type { Balance } from './upstream/balancer.js';
import type { BreakerOptions } from './upstream/breaker.js';
import { BREAKER_DEFAULTS, resolveBreaker } from './upstream/breaker-options.js';
import type { DiscoverTarget } from './upstream/discovery.js';
import { DISCOVERY_DEFAULTS, resolveDiscovery, type ResolvedDiscovery } from './upstream/discovery-options.js';
import type { DnsTarget } from './upstream/dns.js';
import type { TargetSpec } from './upstream/group.js';
import { GROUP_DEFAULTS, resolveBalance, resolveHealthCheck, resolveOutlier, resolveSlowStart } from './upstream/group-options.js';
import type { HealthCheckOptions } from './upstream/health-check.js';
import type { OutlierOptions } from './upstream/outlier.js';
import { defaultRegistry, UpstreamRegistry } from './upstream/registry.js';
import type { RetryBudgetOptions } from './upstream/retry-budget.js';
import { basePathOf, resolveTargets, type StaticTarget } from './upstream/target-options.js';

export interface ProxyOptions {
  /**
   * The upstream: an `http:` or `https:` URL, or a list of them (several hosts
   * of one service, optionally `{ url, weight }`). Its path, if any, is a
   * prefix for every request path; all hosts of a list share scheme and path.
   * Or discovered hosts: `{ dns: 'orders.internal', port: 8080 }` (A, AAAA or
   * SRV records, see {@link DnsTarget}) or `{ discover }` (any registry, see
   * {@link DiscoverTarget}). Until a discovered group has its first hosts,
   * requests fail with `UPSTREAM_DNS_FAILED`.
   */
  target: StaticTarget | DnsTarget | DiscoverTarget;
  /**
   * How a host is picked for each attempt in a group: `'least-request'` (two
   * random choices, fewer in flight per weight wins), `'round-robin'` (smooth
   * weighted) or `'peak-ewma'` (two random choices, latency × load). Default
   * `'peak-ewma'`: see BENCHMARKS.md's fault benchmark.
   */
  balance?: Balance;
  /** Passive ejection of hosts that fail in a row, or `false`. Defaults: see {@link OutlierOptions}. */
  outlierDetection?: Partial<OutlierOptions> | false;
  /** Active health checks, off by default; `true` or an object turns them on. Defaults: see {@link HealthCheckOptions}. */
  healthCheck?: Partial<HealthCheckOptions> | boolean;
  /** A host that joins or comes back gets a share of traffic that grows over this many ms, from 10 %. Default `10000`; `0` for none. */
  slowStart?: number;
  /**
   * Rewrites the request path (as the app sees it, mount path removed, with its
   * query) before the target's prefix: http-proxy-middleware's object of
   * regular expression → replacement (the first matching rule applies), or
   * `(path, req) => path`. The result is checked like any path.
   */
  pathRewrite?: PathRewrite;
  /** Header rewriting in both directions. */
  headers?: HeaderOptions;
  /**
   * Rewrites `Location`, `Content-Location` and `Refresh` that point at a host
   * of the target to the origin and mount path the client used, and
   * path-absolute ones under the target's path to the mount path. Default `true`.
   */
  rewriteRedirects?: boolean;
  /** Rewrites the `Domain` of every `Set-Cookie`: a value for all, a map (`'*'` for any other; `''` removes), or `false`. Default `false`. */
  cookieDomainRewrite?: CookieRewrite;
  /** Rewrites the `Path` of every `Set-Cookie`, in the same shapes. Default `false`. */
  cookiePathRewrite?: CookieRewrite;
  /** Buffers, decodes, transforms and re-encodes matching responses. Off by default. */
  transformResponse?: TransformResponse;
  /**
   * The upstream's public name: the breaker key and the `upstream` field of
   * error bodies. Default: none; the breaker is then keyed by the target's
   * origin and error bodies leave `upstream` out, so no address reaches a client.
   */
  name?: string;
  /** Per-phase timeouts in ms. Defaults: see {@link TimeoutOptions}. */
  timeout?: Partial<TimeoutOptions>;
  /**
   * Send the target's own host as `Host` (nginx's `proxy_set_header Host
   * $proxy_host` default), or, with `false`, the client's. Default `true`: a
   * client's `Host` must not pick a virtual host on a shared upstream.
   */
  changeOrigin?: boolean;
  /**
   * Upstream statuses answered with the 502 contract (code `UPSTREAM_STATUS`)
   * instead of being passed through. Default `[502, 503, 504]`; `[]` passes every status through.
   */
  failureStatuses?: readonly number[];
  /**
   * The status sent for a failure: a number, or a function of the failure code.
   * Default `502`. Pass `rfc9209Status` for 504 on timeouts and 503 when the
   * proxy refuses to call the upstream. `REQUEST_INVALID` is always 400.
   */
  status?: StatusOption;
  /** The proxy's name in `Proxy-Status`. An RFC 8941 token. Default `'resilient-proxy'`. */
  proxyName?: string;
  /** The request id header: read from the client, sent upstream, echoed on errors. Default `'x-request-id'`. */
  requestIdHeader?: string;
  /**
   * An undici dispatcher to send requests through (custom TLS, DNS or
   * connection settings). Default: a keep-alive pool owned by the proxy.
   * A dispatcher you pass is yours to close.
   */
  dispatcher?: Dispatcher;
  /** Retries, or `false` for none. Defaults: see {@link RetryOptions}. */
  retry?: Partial<Omit<RetryOptions, 'budget'>> & { budget?: Partial<RetryBudgetOptions> | false } | false;
  /**
   * The upstream's circuit breaker, or `false` for none. Shared by every proxy
   * to the same upstream in the registry; the first one configures it.
   * Defaults: see {@link BreakerOptions}.
   */
  breaker?: Partial<BreakerOptions> | false;
  /** The registry holding per-upstream state (breaker, concurrency, retry budget). Default: one shared by the whole process. */
  registry?: UpstreamRegistry;
  /**
   * Trust the forwarding headers a client sends (set it when a load balancer
   * you control is in front): every `X-Forwarded-*`, `Forwarded` and
   * `X-Real-IP` pass, and `X-Forwarded-For` is appended to. Default `false`:
   * the client's are dropped, and `X-Forwarded-For`, `-Proto` and `-Host`
   * describe the client's connection as this proxy sees it.
   */
  trustProxy?: boolean;
  /** Size limits, in bytes; `0` for none. Defaults: see {@link LimitOptions}. */
  limits?: Partial<LimitOptions>;
  /** Observation hooks. */
  hooks?: ProxyHooks;
  /**
   * Stale on error: keep the last good response of GET and HEAD requests a
   * shared cache may store, and answer a failure with it while its age
   * allows. `true` for the defaults; off by default. See {@link StaleIfErrorOptions}.
   */
  staleIfError?: Partial<StaleIfErrorOptions> | boolean;
  /**
   * An adaptive concurrency limit per upstream (Netflix concurrency-limits'
   * Gradient2) instead of the fixed `breaker.capacity`: it follows the
   * latency to the response head, shrinking as the upstream queues. Attempts
   * over it get `UPSTREAM_OVERLOADED` at once. `true` for the reference's
   * defaults; off by default. See {@link AdaptiveConcurrencyOptions}.
   */
  adaptiveConcurrency?: Partial<AdaptiveConcurrencyOptions> | boolean;
  /**
   * Deadline propagation: every attempt tells the upstream, in a header, how
   * many ms the proxy will still wait (what is left of `timeout.total`, minus
   * a margin); an attempt with too little left is not started. Needs
   * `timeout.total` (or `trustClient`). `true` for the defaults; off by
   * default. See {@link DeadlineOptions}.
   */
  deadline?: Partial<DeadlineOptions> | boolean;
  /**
   * Hedged requests: a GET or HEAD (body fully read, or none) to a group of
   * two or more hosts whose response head has not come after a delay is sent
   * to another host too; the first head wins and the others are cancelled.
   * Bounded by a budget (10 % of requests by default) and by the breaker,
   * the concurrency limit, retry throttling and the deadline. `true` for the
   * defaults; off by default. See {@link HedgeOptions} and
   * docs/tail-and-overload.md.
   */
  hedge?: { delay?: number | Partial<HedgeDelay>; maxHedges?: number; budget?: number; methods?: readonly string[] } | boolean;
}

/** Every option's default, in one constant: each feature's own defaults, composed. */
export const DEFAULTS = Object.freeze({
  timeout: TIMEOUT_DEFAULTS,
  changeOrigin: true,
  failureStatuses: CONTRACT_DEFAULTS.failureStatuses,
  status: CONTRACT_DEFAULTS.status,
  proxyName: CONTRACT_DEFAULTS.proxyName,
  requestIdHeader: 'x-request-id',
  retry: RETRY_DEFAULTS,
  trustProxy: false,
  limits: LIMIT_DEFAULTS,
  breaker: BREAKER_DEFAULTS,
  balance: GROUP_DEFAULTS.balance,
  outlierDetection: GROUP_DEFAULTS.outlierDetection,
  healthCheck: GROUP_DEFAULTS.healthCheck,
  slowStart: GROUP_DEFAULTS.slowStart,
  rewriteRedirects: REWRITE_DEFAULTS.rewriteRedirects,
  transformMaxBytes: REWRITE_DEFAULTS.transformMaxBytes,
  dns: DISCOVERY_DEFAULTS.dns,
  discoverBackoff: DISCOVERY_DEFAULTS.discoverBackoff,
  staleIfError: STALE_DEFAULTS,
  adaptiveConcurrency: ADAPTIVE_DEFAULTS,
  deadline: DEADLINE_DEFAULTS,
  hedge: HEDGE_DEFAULTS,
});

export interface ResolvedOptions {
  /** The first host (the only one of a single target); for a discovered target, its scheme, name and path prefix. */
  readonly target: URL;
  /** Where the hosts come from when they are discovered (`targets` is then empty), or `null`. */
  readonly discovery: ResolvedDiscovery | null;
  readonly origin: string;
  readonly targets: readonly TargetSpec[];
  readonly balance: Balance;
  readonly outlierDetection: Readonly<OutlierOptions> | null;
  readonly healthCheck: Readonly<HealthCheckOptions> | null;
  readonly slowStart: number;
  readonly pathRewrite: ResolvedPathRewrite | null;
  readonly requestHeaders: HeaderPatch | RequestHeadersHook | null;
  readonly responseHeaders: HeaderPatch | ResponseHeadersHook | null;
  readonly rewriteRedirects: boolean;
  readonly cookieDomainRewrite: CookieRewrite;
  readonly cookiePathRewrite: CookieRewrite;
  readonly transformResponse: Readonly<Required<TransformResponse>> | null;
  readonly staleIfError: ResolvedStaleIfError | null;
  /** Path prefix from the target, without a trailing slash ('' for none). */
  readonly basePath: string;
  readonly name: string | null;
  /** The breaker and registry key: the name, or the origin. */
  readonly upstream: string;
  readonly timeout: Readonly<ResolvedTimeouts>;
  readonly changeOrigin: boolean;
  readonly failureStatuses: ReadonlySet<number>;
  readonly status: StatusOption;
  readonly proxyName: string;
  readonly requestIdHeader: string;
  readonly dispatcher: Dispatcher | null;
  readonly retry: ResolvedRetry | null;
  readonly breaker: Readonly<BreakerOptions> | null;
  readonly trustProxy: boolean;
  readonly limits: Readonly<LimitOptions>;
  readonly registry: UpstreamRegistry;
  readonly hooks: Readonly<ProxyHooks>;
  readonly adaptiveConcurrency: Readonly<AdaptiveConcurrencyOptions> | null;
  readonly deadline: Readonly<DeadlineOptions> | null;
  readonly hedge: Readonly<HedgeOptions> | null;
}

function resolveDispatcher(value: unknown): Dispatcher | null {
  if (value === undefined) return null;
  if (!isPlainObject(value) || typeof value.dispatch !== 'function') {
    fail('dispatcher', 'an undici Dispatcher (Agent, Pool, Client)', value);
  }
  return value as unknown as Dispatcher;
}

function resolveRegistry(value: unknown): UpstreamRegistry | null {
  if (value === undefined) return null;
  if (!(value instanceof UpstreamRegistry)) fail('registry', 'an UpstreamRegistry', value);
  return value;
}

/** Every top-level option, in the order an unknown one lists them. */
const KNOWN = [
  'target', 'name', 'timeout', 'changeOrigin', 'failureStatuses', 'status', 'proxyName', 'requestIdHeader', 'dispatcher', 'retry', 'breaker',
  'registry', 'trustProxy', 'limits', 'hooks', 'balance', 'outlierDetection', 'healthCheck', 'slowStart', 'pathRewrite', 'headers',
  'rewriteRedirects', 'cookieDomainRewrite', 'cookiePathRewrite', 'transformResponse', 'staleIfError', 'adaptiveConcurrency', 'deadline', 'hedge',
] as const;

function freeze<T extends object>(value: T | null): Readonly<T> | null {
  return value === null ? null : Object.freeze(value);
}

export function resolveOptions(options: unknown): ResolvedOptions {
  if (!isPlainObject(options)) fail('options', 'an object with at least a `target`', options);
  checkKeys('', options, KNOWN);
  const name = optionalString('name', options.name, /^[\x21-\x7e](?:[\x20-\x7e]{0,98}[\x21-\x7e])?$/, 'a non-empty printable ASCII string of at most 100 characters');
  const discovered = resolveDiscovery(options.target, name);
  const { first: target, targets } = discovered === null ? resolveTargets(options.target) : { first: discovered.base, targets: [] };
  const balance = resolveBalance(options.balance);
  const changeOrigin = optionalBoolean('changeOrigin', options.changeOrigin) ?? DEFAULTS.changeOrigin;
  const trustProxy = optionalBoolean('trustProxy', options.trustProxy) ?? DEFAULTS.trustProxy;
  const rewriteRedirects = resolveRewriteRedirects(options.rewriteRedirects);
  const headers = headerSides(options.headers);
  const proxyName = resolveProxyName(options.proxyName);
  const requestIdHeader = optionalString('requestIdHeader', options.requestIdHeader, HEADER_NAME, 'a header name') ?? DEFAULTS.requestIdHeader;
  const breaker = resolveBreaker(options.breaker);
  const adaptiveConcurrency = resolveAdaptiveConcurrency(options.adaptiveConcurrency);
  if (adaptiveConcurrency !== null && breaker !== null && breaker.capacity > 0) {
    throw new TypeError('Expected one concurrency limit, got both `breaker.capacity` and `adaptiveConcurrency`: the adaptive limit replaces the fixed one, so drop one of them.');
  }
  const timeout = Object.freeze(resolveTimeouts(options.timeout));
  return Object.freeze({
    target,
    discovery: discovered?.discovery ?? null,
    origin: target.origin,
    basePath: basePathOf(target),
    targets: Object.freeze(targets),
    balance,
    outlierDetection: freeze(resolveOutlier(options.outlierDetection)),
    healthCheck: freeze(resolveHealthCheck(options.healthCheck)),
    slowStart: resolveSlowStart(options.slowStart),
    pathRewrite: resolvePathRewrite(options.pathRewrite),
    requestHeaders: resolveRequestHeaders(headers.request),
    responseHeaders: resolveResponseHeaders(headers.response),
    rewriteRedirects,
    cookieDomainRewrite: resolveCookieRewrite('cookieDomainRewrite', options.cookieDomainRewrite),
    cookiePathRewrite: resolveCookieRewrite('cookiePathRewrite', options.cookiePathRewrite),
    transformResponse: resolveTransform(options.transformResponse),
    staleIfError: resolveStaleIfError(options.staleIfError),
    name,
    upstream: name ?? discovered?.discovery.source ?? targets.map((t) => t.origin).join(','),
    timeout,
    changeOrigin,
    failureStatuses: resolveFailureStatuses(options.failureStatuses),
    status: resolveStatus(options.status),
    proxyName,
    requestIdHeader: requestIdHeader.toLowerCase(),
    dispatcher: resolveDispatcher(options.dispatcher),
    retry: resolveRetry(options.retry),
    breaker,
    trustProxy,
    limits: Object.freeze(resolveLimits(options.limits)),
    registry: resolveRegistry(options.registry) ?? defaultRegistry,
    hooks: Object.freeze(resolveHooks(options.hooks)),
    adaptiveConcurrency,
    deadline: resolveDeadline(options.deadline, timeout.total),
    hedge: resolveHedge(options.hedge),
  });
}

// The public options, their defaults (in one constant) and their validation.
// Options are checked once, at construction, copied and frozen: a bad option
// is a TypeError naming it, and the caller's object is never touched.

import type { Dispatcher } from 'undici';
import type { Phase } from './contract/classify.js';
import type { FailureCode, ProxyStatusError } from './contract/failures.js';
import type { BreakerOptions, BreakerStateChange } from './upstream/breaker.js';
import type { Balance } from './upstream/balancer.js';
import type { HostStateChange, PanicChange, TargetSpec } from './upstream/group.js';
import type { HealthCheckOptions } from './upstream/health-check.js';
import type { OutlierOptions } from './upstream/outlier.js';
import type { IncomingMessage } from 'node:http';
import { Resolver } from 'node:dns/promises';
import type { Discover, DiscoverTarget, DiscoveryEvent } from './upstream/discovery.js';
import { dnsDiscover, dnsSource, type DnsTarget, type ResolvedDnsTarget } from './upstream/dns.js';
import { compilePathRewrite, type CookieRewrite, type HeaderMap, type HeaderPatch, type PathRewrite } from './exchange/rewrite.js';
import type { TransformResponse } from './exchange/transform.js';
import type { ResolvedStaleIfError, StaleIfErrorOptions } from './stale/layer.js';
import { migrationHint, MIGRATION_GUIDE, TIMEOUT_NUMBER_HINT } from './migration.js';
import { DEFAULT_STALE_MAX_BYTES, MemoryStaleStore } from './stale/store.js';
import { defaultRegistry, UpstreamRegistry } from './upstream/registry.js';
import type { RetryBudgetOptions } from './upstream/retry-budget.js';
import { ADAPTIVE_DEFAULTS, resolveAdaptiveConcurrency, type AdaptiveConcurrencyOptions } from './policy/adaptive-limit.js';
import { DEADLINE_DEFAULTS, resolveDeadline, type DeadlineOptions } from './policy/deadline.js';
import { HEDGE_DEFAULTS, resolveHedge, type HedgeDelay, type HedgeOptions } from './policy/hedge.js';

/** Per-phase time limits, in milliseconds. `0` turns a timer off. */
export interface TimeoutOptions {
  /**
   * DNS lookup, TCP connect and TLS handshake together, until the request can
   * be written. Default `5000` ms: enough for two lost SYNs (retransmitted at
   * 1 s and 3 s), far above any healthy connect.
   */
  connect: number;
  /**
   * From the moment the request is fully sent until the response headers
   * arrive; for a response read whole for `transformResponse`, also from its
   * headers to its last byte (the client has received nothing meanwhile).
   * Default `30000` ms.
   */
  response: number;
  /**
   * The longest gap between two pieces of the response body, the first one
   * included (and, while uploading, the longest time the upstream may refuse
   * to read the request body). Time the client spends not reading is not
   * counted. A response head waits at most 100 ms for its first body byte
   * before it goes to the client; past that a late body ends in a cut
   * connection, within it in `UPSTREAM_RESPONSE_TIMEOUT`. Default `30000` ms.
   */
  idle: number;
  /**
   * A deadline for the whole exchange, from the moment the request body is in
   * the proxy's hands until the response is complete: at arrival for a
   * request without a body, once the body or its first
   * `limits.requestBufferBytes` arrived for one with a body (a slow upload is
   * not the upstream's time). Default `0` (none): per-phase timers already bound
   * every wait, and a deadline would cut long downloads.
   */
  total: number;
  /**
   * The longest wait for a user function the request depends on: an async
   * `headers.request` hook, and a `transformResponse` (decode, transform and
   * encode). One that has not settled by then ends the request with the
   * contract, code `PROXY_INTERNAL_ERROR`: the upstream is not blamed, and
   * the breaker does not count it. Default `10000` ms; `0` waits for ever.
   */
  hook: number;
  /**
   * The longest gap, in ms, between two pieces of the request body the client
   * sends (counted only while the proxy is reading: time the upstream spends
   * not reading is not the client's). Past it: `408` with `REQUEST_TIMEOUT`
   * (or, once the response has started, a cut connection); never retried,
   * never counted against the upstream. Default `30000` ms, the proxy's own
   * `idle` (Apache's `RequestReadTimeout` body default is 20 s, nginx's
   * `client_body_timeout` 60 s; Node's `requestTimeout` of 300 s would hold a
   * stalled upload for five minutes). `0` turns it off.
   */
  upload: number;
  /**
   * The longest silence, in either direction, of a WebSocket tunnel after
   * `101` before both sides are closed. Default: `idle`. `0` turns it off.
   */
  tunnelIdle?: number;
}

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

/** What the `onFailure` hook is told, once per failed request. */
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

/** Rewrites the headers sent upstream: gets a plain copy (lower-case names), returns the headers to send. May be async. */
export type RequestHeadersHook = (headers: HeaderMap, req: IncomingMessage) => Record<string, string | readonly string[]> | Promise<Record<string, string | readonly string[]>>;
/** Rewrites the response headers sent to the client: gets a plain copy, returns the headers to send. */
export type ResponseHeadersHook = (headers: HeaderMap, context: { readonly statusCode: number; readonly req: IncomingMessage }) => Record<string, string | readonly string[]>;

export interface HeaderOptions {
  /** Headers to set (`null` removes) on every upstream request, or a function returning the headers to send. */
  request?: HeaderPatch | RequestHeadersHook;
  /** Headers to set (`null` removes) on every upstream response passed to the client, or a function returning them. */
  response?: HeaderPatch | ResponseHeadersHook;
}

/** One host of a group with a weight (default `1`). */
export interface WeightedTarget {
  url: string | URL;
  weight?: number;
}

/** When and how failed attempts are tried again. See the README for the safety rules. */
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

/** Hosts known now: one URL, or a list (what `setTargets` takes). */
export type StaticTarget = string | URL | readonly (string | URL | WeightedTarget)[];

export type StatusOption = number | ((code: FailureCode, proxyStatus: ProxyStatusError | null) => number);

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
   * `'peak-ewma'`: see the README's fault benchmark.
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

/** Body size limits, in bytes. `0` turns a limit off. */
export interface LimitOptions {
  /**
   * The largest request body forwarded. Over it: `413` with `REQUEST_TOO_LARGE`
   * (at once when `Content-Length` says so, else when the stream passes it).
   * Default `0` (none): uploads stream whatever their size.
   */
  requestBodyBytes: number;
  /**
   * The largest response body passed on. Over it: `UPSTREAM_BAD_RESPONSE`
   * (`http_response_body_size`) when `Content-Length` says so, else the client
   * connection is cut. Default `0` (none).
   */
  responseBodyBytes: number;
  /**
   * How much of a request body is read into memory before the upstream is
   * called, as nginx buffers request bodies: a body that ends within it goes
   * upstream in one piece, so a slow upload holds no upstream connection and
   * no `breaker.capacity` slot while it arrives; a longer one streams on from
   * there. Default `1048576` (1 MiB: nginx's default `client_max_body_size`,
   * the largest body it buffers by default; the same bound as
   * `retry.maxBodyBytes`). `0` streams every body at once (for request bodies
   * that must reach the upstream as they are sent).
   */
  requestBufferBytes: number;
}

export const DEFAULTS = Object.freeze({
  timeout: Object.freeze({ connect: 5_000, response: 30_000, idle: 30_000, total: 0, hook: 10_000, upload: 30_000 }),
  changeOrigin: true,
  failureStatuses: Object.freeze([502, 503, 504]),
  status: 502,
  proxyName: 'resilient-proxy',
  requestIdHeader: 'x-request-id',
  retry: Object.freeze({
    retries: 2,
    minDelay: 50,
    maxDelay: 1_000,
    factor: 2,
    jitter: true,
    methods: Object.freeze(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']),
    maxBodyBytes: 1024 * 1024,
    budget: Object.freeze({ maxTokens: 10, tokenRatio: 0.1 }),
    attemptHeader: 'x-attempt-count',
  }),
  trustProxy: false,
  limits: Object.freeze({ requestBodyBytes: 0, responseBodyBytes: 0, requestBufferBytes: 1024 * 1024 }),
  breaker: Object.freeze({
    errorThresholdPercentage: 50,
    volumeThreshold: 100,
    resetTimeout: 5_000,
    probeTimeout: 2_000,
    rollingCountTimeout: 10_000,
    capacity: 0,
  }),
  balance: 'peak-ewma',
  outlierDetection: Object.freeze({ consecutiveFailures: 5, baseEjectionTime: 30_000, maxEjectionTime: 300_000, maxEjectionPercent: 50 }),
  healthCheck: Object.freeze({ path: '/healthz', interval: 10_000, timeout: 2_000, healthyThreshold: 2, unhealthyThreshold: 2 }),
  slowStart: 10_000,
  rewriteRedirects: true,
  transformMaxBytes: 1024 * 1024,
  dns: Object.freeze({ type: 'A', protocol: 'http:', refresh: Object.freeze({ min: 1_000, max: 30_000 }), timeout: 2_000 }),
  discoverBackoff: Object.freeze({ min: 1_000, max: 30_000 }),
  staleIfError: Object.freeze({ maxStale: 300_000, maxStaleOverridesOrigin: false, maxEntryBytes: 1024 * 1024, maxBytes: DEFAULT_STALE_MAX_BYTES }),
  adaptiveConcurrency: ADAPTIVE_DEFAULTS,
  deadline: DEADLINE_DEFAULTS,
  hedge: HEDGE_DEFAULTS,
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

/** A discovered target, checked. */
export interface ResolvedDiscovery {
  /** For people: `dns A orders.internal:8080 via 127.0.0.1:5353`, `discover`. */
  readonly source: string;
  /** What two proxies of one upstream must share: the DNS settings, or the `discover` function. */
  readonly identity: unknown;
  readonly discover: Discover;
  readonly backoff: { readonly min: number; readonly max: number };
  readonly dns: ResolvedDnsTarget | null;
}

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
  readonly pathRewrite: ((path: string, req: IncomingMessage) => string) | null;
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
  readonly timeout: Readonly<TimeoutOptions & { tunnelIdle: number }>;
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

/** The attempt header the proxy owns, whose client-sent copy is dropped even when retries are off. */
export function ownAttemptHeader(config: Pick<ResolvedOptions, 'retry'>): string {
  return config.retry?.attemptHeader ?? DEFAULTS.retry.attemptHeader;
}

const TOKEN = /^[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]*$/;
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function fail(option: string, expected: string, value: unknown): never {
  throw new TypeError(`Expected \`${option}\` to be ${expected}, got ${describe(value)}.`);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkKeys(option: string, value: Record<string, unknown>, allowed: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      // A key that is not a plain name is shown quoted, so the message stays readable.
      const shown = /^[\w$]+$/.test(key) ? key : JSON.stringify(key);
      const path = option === '' ? shown : `${option}.${shown}`;
      // Another proxy's option (`on: { proxyReq }`): the most specific hint.
      const nested = value[key];
      const inner = isPlainObject(nested) ? Object.keys(nested).map((sub) => `${path}.${sub}`).find((sub) => migrationHint(sub) !== null) : undefined;
      const hinted = inner ?? path;
      const hint = migrationHint(hinted);
      if (hint !== null) throw new TypeError(`Unknown option \`${hinted}\` → here: ${hint}. See the migration guide (${MIGRATION_GUIDE}).`);
      throw new TypeError(`Unknown option \`${path}\`. Known options: ${allowed.join(', ')}.`);
    }
  }
}

function duration(option: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 2_147_483_647) {
    fail(option, 'a non-negative finite number of milliseconds (0 turns it off)', value);
  }
  return value;
}

function resolveTarget(value: unknown): URL {
  let url: URL;
  if (value instanceof URL) url = new URL(value.href);
  else if (typeof value === 'string') {
    try {
      url = new URL(value);
    } catch {
      fail('target', 'an absolute http: or https: URL', value);
    }
  } else fail('target', 'an absolute http: or https: URL (string or URL)', value);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') fail('target', 'an http: or https: URL', value);
  if (url.username !== '' || url.password !== '') {
    fail('target', 'a URL without credentials (send them as a header instead)', '[redacted URL]');
  }
  if (url.search !== '' || url.hash !== '') fail('target', 'a URL without a query string or fragment', value);
  return url;
}

/** The hosts of `target`: one URL, or a list sharing scheme and path prefix. */
export function resolveTargets(value: unknown): { first: URL; targets: TargetSpec[] } {
  if (!Array.isArray(value)) {
    const url = resolveTarget(value);
    return { first: url, targets: [{ origin: url.origin, weight: 1 }] };
  }
  if (value.length === 0) fail('target', 'a URL or a non-empty list of URLs', value);
  const urls: URL[] = [];
  const targets: TargetSpec[] = [];
  value.forEach((entry: unknown, index) => {
    let url: URL;
    let weight = 1;
    if (isPlainObject(entry) && !(entry instanceof URL)) {
      checkKeys(`target[${index}]`, entry, ['url', 'weight']);
      url = resolveTarget(entry.url);
      weight = positive(`target[${index}].weight`, entry.weight, 1, 'a whole number from 1 to 1000', (n) => Number.isInteger(n) && n >= 1 && n <= 1000);
    } else url = resolveTarget(entry);
    const first = urls[0];
    if (first !== undefined && (url.protocol !== first.protocol || basePathOf(url) !== basePathOf(first))) {
      fail('target', `a list of URLs that share one scheme and path prefix (like ${first.protocol}//…${basePathOf(first)})`, url.href);
    }
    if (targets.some((target) => target.origin === url.origin)) fail('target', 'a list of distinct hosts', `${url.origin} twice`);
    urls.push(url);
    targets.push({ origin: url.origin, weight });
  });
  return { first: urls[0] as URL, targets };
}

function basePathOf(url: URL): string {
  return url.pathname.replace(/\/+$/, '');
}

const DNS_NAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_][A-Za-z0-9_-]{0,62})*\.?$/;

function resolveBounds(option: string, value: unknown, defaults: { readonly min: number; readonly max: number }): { min: number; max: number } {
  if (value === undefined) return { ...defaults };
  if (!isPlainObject(value)) fail(option, 'an object like { min, max } (milliseconds)', value);
  checkKeys(option, value, ['min', 'max']);
  const expected = 'a number of milliseconds from 1 to 2147483647';
  const inRange = (n: number): boolean => n >= 1 && n <= 2_147_483_647;
  const min = positive(`${option}.min`, value.min, defaults.min, expected, inRange);
  const max = positive(`${option}.max`, value.max, Math.max(min, defaults.max), expected, inRange);
  if (max < min) fail(`${option}.max`, `at least \`${option}.min\` (${min})`, max);
  return { min, max };
}

/** The scheme and path prefix every discovered host shares, as a URL on `host` (for logs). */
function discoveredBase(protocol: unknown, path: unknown, host: string): URL {
  if (protocol !== undefined && protocol !== 'http:' && protocol !== 'https:') fail('target.protocol', "'http:' or 'https:'", protocol);
  if (path !== undefined && (typeof path !== 'string' || (path !== '' && !path.startsWith('/')))) fail('target.path', "a path prefix starting with '/' (or '')", path);
  const base = new URL(`${(protocol as string | undefined) ?? DEFAULTS.dns.protocol}//${host}`);
  if (typeof path === 'string' && path !== '') {
    const withPath = new URL(path, base);
    if (withPath.search !== '' || withPath.hash !== '' || withPath.pathname !== path) fail('target.path', 'a path prefix without a query string, fragment or dot segment', path);
    return withPath;
  }
  return base;
}

function resolveDnsTarget(value: Record<string, unknown>): { base: URL; discovery: ResolvedDiscovery } {
  checkKeys('target', value, ['dns', 'type', 'port', 'protocol', 'path', 'servers', 'refresh', 'timeout']);
  const dns = optionalString('target.dns', value.dns, DNS_NAME, 'a DNS name such as "orders.internal"') as string;
  const type = value.type ?? DEFAULTS.dns.type;
  if (type !== 'A' && type !== 'AAAA' && type !== 'SRV') fail('target.type', "'A', 'AAAA' or 'SRV'", type);
  let port: number | null = null;
  if (type === 'SRV') {
    if (value.port !== undefined) fail('target.port', 'absent for SRV records (each record carries its port)', value.port);
  } else port = positive('target.port', value.port ?? Number.NaN, 0, 'a port number from 1 to 65535 (required for A and AAAA records)', (n) => Number.isInteger(n) && n >= 1 && n <= 65_535);
  let servers: readonly string[] | null = null;
  if (value.servers !== undefined) {
    const expected = 'a non-empty list of DNS server addresses like "127.0.0.1:5353" or "[::1]:53"';
    if (!Array.isArray(value.servers) || value.servers.length === 0 || !value.servers.every((server) => typeof server === 'string')) fail('target.servers', expected, value.servers);
    servers = Object.freeze([...value.servers]);
    try {
      new Resolver().setServers(servers);
    } catch {
      fail('target.servers', expected, value.servers);
    }
  }
  const refresh = Object.freeze(resolveBounds('target.refresh', value.refresh, DEFAULTS.dns.refresh));
  const timeout = positive('target.timeout', value.timeout, DEFAULTS.dns.timeout, 'a number of milliseconds from 1 to 60000', (n) => n >= 1 && n <= 60_000);
  const base = discoveredBase(value.protocol, value.path, port === null ? dns : `${dns}:${port}`);
  const target: ResolvedDnsTarget = Object.freeze({ dns, type, port, protocol: base.protocol as 'http:' | 'https:', servers, refresh, timeout });
  const source = dnsSource(target);
  return { base, discovery: Object.freeze({ source, identity: JSON.stringify(target), discover: dnsDiscover(target), backoff: refresh, dns: target }) };
}

function resolveDiscoverTarget(value: Record<string, unknown>, name: string | null): { base: URL; discovery: ResolvedDiscovery } {
  checkKeys('target', value, ['discover', 'protocol', 'path', 'backoff']);
  if (typeof value.discover !== 'function') fail('target.discover', 'a function returning an async iterable of host lists', value.discover);
  // Nothing else names the upstream: its shared state needs a key, and its logs a name.
  if (name === null) fail('name', 'set with `target.discover` (it keys the shared breaker, budget and hosts)', undefined);
  const base = discoveredBase(value.protocol, value.path, 'discovered.invalid');
  const backoff = Object.freeze(resolveBounds('target.backoff', value.backoff, DEFAULTS.discoverBackoff));
  return { base, discovery: Object.freeze({ source: 'discover', identity: value.discover, discover: value.discover as Discover, backoff, dns: null }) };
}

/** A discovered target (`{ dns }` or `{ discover }`), or `null` for hosts known now. */
function resolveDiscovery(value: unknown, name: string | null): { base: URL; discovery: ResolvedDiscovery } | null {
  if (!isPlainObject(value) || value instanceof URL) return null;
  if ('dns' in value) return resolveDnsTarget(value);
  if ('discover' in value) return resolveDiscoverTarget(value, name);
  return null;
}

const BALANCES: readonly Balance[] = ['least-request', 'round-robin', 'peak-ewma'];

function resolveOutlier(value: unknown): OutlierOptions | null {
  const defaults = DEFAULTS.outlierDetection;
  if (value === false) return null;
  if (value === undefined) return { ...defaults };
  if (!isPlainObject(value)) fail('outlierDetection', 'an object of outlier detection options or false', value);
  checkKeys('outlierDetection', value, ['consecutiveFailures', 'baseEjectionTime', 'maxEjectionTime', 'maxEjectionPercent']);
  const ms = (n: number): boolean => n >= 1 && n <= 86_400_000;
  const options = {
    consecutiveFailures: positive('outlierDetection.consecutiveFailures', value.consecutiveFailures, defaults.consecutiveFailures, 'a whole number from 1 to 1000', (n) => Number.isInteger(n) && n >= 1 && n <= 1000),
    baseEjectionTime: positive('outlierDetection.baseEjectionTime', value.baseEjectionTime, defaults.baseEjectionTime, 'a number of milliseconds from 1 to 86400000', ms),
    maxEjectionTime: positive('outlierDetection.maxEjectionTime', value.maxEjectionTime, defaults.maxEjectionTime, 'a number of milliseconds from 1 to 86400000', ms),
    maxEjectionPercent: positive('outlierDetection.maxEjectionPercent', value.maxEjectionPercent, defaults.maxEjectionPercent, 'a percentage from 0 to 100', (n) => n >= 0 && n <= 100),
  };
  if (options.maxEjectionTime < options.baseEjectionTime) {
    fail('outlierDetection.maxEjectionTime', `at least \`outlierDetection.baseEjectionTime\` (${options.baseEjectionTime})`, options.maxEjectionTime);
  }
  return options;
}

function resolveHealthCheck(value: unknown): HealthCheckOptions | null {
  const defaults = DEFAULTS.healthCheck;
  if (value === undefined || value === false) return null;
  if (value === true) return { ...defaults };
  if (!isPlainObject(value)) fail('healthCheck', 'an object of health check options, true or false', value);
  checkKeys('healthCheck', value, ['path', 'interval', 'timeout', 'healthyThreshold', 'unhealthyThreshold']);
  const path = value.path ?? defaults.path;
  if (typeof path !== 'string' || !/^\/[\x21-\x7e]*$/.test(path)) fail('healthCheck.path', 'a path starting with /', value.path);
  const whole = (n: number): boolean => Number.isInteger(n) && n >= 1 && n <= 100;
  return {
    path,
    interval: positive('healthCheck.interval', value.interval, defaults.interval, 'a number of milliseconds from 100 to 3600000', (n) => n >= 100 && n <= 3_600_000),
    timeout: positive('healthCheck.timeout', value.timeout, defaults.timeout, 'a number of milliseconds from 1 to 3600000', (n) => n >= 1 && n <= 3_600_000),
    healthyThreshold: positive('healthCheck.healthyThreshold', value.healthyThreshold, defaults.healthyThreshold, 'a whole number from 1 to 100', whole),
    unhealthyThreshold: positive('healthCheck.unhealthyThreshold', value.unhealthyThreshold, defaults.unhealthyThreshold, 'a whole number from 1 to 100', whole),
  };
}

function resolvePathRewrite(value: unknown): ResolvedOptions['pathRewrite'] {
  if (value === undefined) return null;
  if (typeof value === 'function') return compilePathRewrite(value as PathRewrite);
  if (!isPlainObject(value)) fail('pathRewrite', 'an object of regular expression → replacement, or a function (path, req) => path', value);
  for (const [pattern, replacement] of Object.entries(value)) {
    try {
      new RegExp(pattern);
    } catch {
      fail('pathRewrite', 'an object whose keys are regular expressions', pattern);
    }
    if (typeof replacement !== 'string') fail(`pathRewrite[${JSON.stringify(pattern)}]`, 'a replacement string', replacement);
  }
  return compilePathRewrite(value as Record<string, string>);
}

const HOP_BY_HOP_NAMES = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'http2-settings']);
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

function resolveHeaderPatch(option: string, value: unknown): HeaderPatch | ((...args: never[]) => unknown) | null {
  if (value === undefined) return null;
  if (typeof value === 'function') return value as (...args: never[]) => unknown;
  if (!isPlainObject(value)) fail(option, 'an object of headers (null removes one) or a function', value);
  for (const [name, header] of Object.entries(value)) {
    if (!HEADER_NAME.test(name)) fail(option, 'an object whose keys are header names', name);
    const values = Array.isArray(header) ? header : [header];
    if (header !== null && !values.every((item) => typeof item === 'string' && FIELD_VALUE.test(item))) {
      fail(`${option}.${name}`, 'a header value (string or array of strings, no CR, LF or NUL) or null', header);
    }
    if (name.toLowerCase() === 'host') fail(`${option}.host`, 'left out: the Host header is set by `changeOrigin`', header);
    if (HOP_BY_HOP_NAMES.has(name.toLowerCase())) fail(`${option}.${name}`, 'left out: hop-by-hop headers belong to each connection', header);
  }
  return value as HeaderPatch;
}

function resolveCookieRewrite(option: string, value: unknown): CookieRewrite {
  if (value === undefined || value === false) return false;
  if (typeof value === 'string') return value;
  if (!isPlainObject(value) || !Object.values(value).every((item) => typeof item === 'string')) {
    fail(option, "a string, false, or an object mapping old values to new ones ('*' for any other)", value);
  }
  return value as Record<string, string>;
}

function resolveTransform(value: unknown): Readonly<Required<TransformResponse>> | null {
  if (value === undefined) return null;
  if (!isPlainObject(value)) fail('transformResponse', 'an object like { match, transform, maxBytes }', value);
  checkKeys('transformResponse', value, ['match', 'transform', 'maxBytes']);
  if (typeof value.match !== 'function') fail('transformResponse.match', 'a function (statusCode, headers) => boolean', value.match);
  if (typeof value.transform !== 'function') fail('transformResponse.transform', 'a function (body, context) => body', value.transform);
  const maxBytes = positive('transformResponse.maxBytes', value.maxBytes, DEFAULTS.transformMaxBytes, 'a whole number of bytes from 1 to 67108864', (n) => Number.isInteger(n) && n >= 1 && n <= 64 * 1024 * 1024);
  return Object.freeze({ match: value.match as TransformResponse['match'], transform: value.transform as TransformResponse['transform'], maxBytes });
}

function resolveStaleIfError(value: unknown): ResolvedStaleIfError | null {
  const defaults = DEFAULTS.staleIfError;
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

function resolveTimeouts(value: unknown): TimeoutOptions & { tunnelIdle: number } {
  if (value === undefined) return { ...DEFAULTS.timeout, tunnelIdle: DEFAULTS.timeout.idle };
  if (typeof value === 'number') throw new TypeError(`Expected \`timeout\` to be an object like { connect, response, idle, total }, got ${value} → here: ${TIMEOUT_NUMBER_HINT}. See the migration guide (${MIGRATION_GUIDE}).`);
  if (!isPlainObject(value)) fail('timeout', 'an object like { connect, response, idle, total }', value);
  checkKeys('timeout', value, ['connect', 'response', 'idle', 'total', 'hook', 'upload', 'tunnelIdle']);
  const idle = duration('timeout.idle', value.idle, DEFAULTS.timeout.idle);
  return {
    connect: duration('timeout.connect', value.connect, DEFAULTS.timeout.connect),
    response: duration('timeout.response', value.response, DEFAULTS.timeout.response),
    idle,
    total: duration('timeout.total', value.total, DEFAULTS.timeout.total),
    hook: duration('timeout.hook', value.hook, DEFAULTS.timeout.hook),
    upload: duration('timeout.upload', value.upload, DEFAULTS.timeout.upload),
    tunnelIdle: duration('timeout.tunnelIdle', value.tunnelIdle, idle),
  };
}

function resolveFailureStatuses(value: unknown): ReadonlySet<number> {
  if (value === undefined) return new Set(DEFAULTS.failureStatuses);
  if (!Array.isArray(value)) fail('failureStatuses', 'an array of HTTP status codes (100-599)', value);
  for (const status of value) {
    if (typeof status !== 'number' || !Number.isInteger(status) || status < 100 || status > 599) {
      fail('failureStatuses', 'an array of HTTP status codes (100-599)', status);
    }
  }
  return new Set(value as number[]);
}

function resolveStatus(value: unknown): StatusOption {
  if (value === undefined) return DEFAULTS.status;
  if (typeof value === 'function') return value as StatusOption;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 400 || value > 599) {
    fail('status', 'an HTTP error status (400-599) or a function of the failure code', value);
  }
  return value;
}

function optionalString(option: string, value: unknown, pattern: RegExp, expected: string): string | null {
  if (value === undefined) return null;
  if (typeof value !== 'string' || !pattern.test(value)) fail(option, expected, value);
  return value;
}

function resolveDispatcher(value: unknown): Dispatcher | null {
  if (value === undefined) return null;
  if (!isPlainObject(value) || typeof value.dispatch !== 'function') {
    fail('dispatcher', 'an undici Dispatcher (Agent, Pool, Client)', value);
  }
  return value as unknown as Dispatcher;
}

const HOOKS = ['onFailure', 'onRetry', 'onBreakerStateChange', 'onHostStateChange', 'onPanic', 'onStale', 'onDiscovery'] as const;

function resolveHooks(value: unknown): ProxyHooks {
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

function positive(option: string, value: unknown, fallback: number, expected: string, check: (n: number) => boolean): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || !check(value)) fail(option, expected, value);
  return value;
}

function resolveBudget(value: unknown): RetryBudgetOptions | null {
  const defaults = DEFAULTS.retry.budget;
  if (value === false) return null;
  if (value === undefined) return { ...defaults };
  if (!isPlainObject(value)) fail('retry.budget', 'an object like { maxTokens, tokenRatio } or false', value);
  for (const old of ['ratio', 'minRetriesPerSecond', 'window']) {
    if (old in value) {
      throw new TypeError(
        `\`retry.budget.${old}\` is gone: the retry budget is now a token bucket, \`{ maxTokens, tokenRatio }\` (gRPC's retry throttling), ` +
          'because a per-instance floor of retries per second multiplies with the number of instances. See the README, Retries.',
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

function resolveRetry(value: unknown): ResolvedRetry | null {
  const defaults = DEFAULTS.retry;
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

function resolveBreaker(value: unknown): BreakerOptions | null {
  const defaults = DEFAULTS.breaker;
  if (value === false) return null;
  if (value === undefined) return { ...defaults };
  if (!isPlainObject(value)) fail('breaker', 'an object of breaker options or false', value);
  checkKeys('breaker', value, ['errorThresholdPercentage', 'volumeThreshold', 'resetTimeout', 'probeTimeout', 'rollingCountTimeout', 'capacity']);
  const whole = (n: number): boolean => Number.isInteger(n) && n >= 0;
  return {
    errorThresholdPercentage: positive('breaker.errorThresholdPercentage', value.errorThresholdPercentage, defaults.errorThresholdPercentage, 'a percentage from 1 to 100', (n) => n >= 1 && n <= 100),
    volumeThreshold: positive('breaker.volumeThreshold', value.volumeThreshold, defaults.volumeThreshold, 'a whole number of attempts (0 or more)', whole),
    resetTimeout: positive('breaker.resetTimeout', value.resetTimeout, defaults.resetTimeout, 'a number of milliseconds from 1 to 3600000', (n) => n >= 1 && n <= 3_600_000),
    probeTimeout: positive('breaker.probeTimeout', value.probeTimeout, defaults.probeTimeout, 'a number of milliseconds from 1 to 3600000', (n) => n >= 1 && n <= 3_600_000),
    rollingCountTimeout: positive('breaker.rollingCountTimeout', value.rollingCountTimeout, defaults.rollingCountTimeout, 'a number of milliseconds from 100 to 3600000', (n) => n >= 100 && n <= 3_600_000),
    capacity: positive('breaker.capacity', value.capacity, defaults.capacity, 'a whole number of attempts in flight (0 for no limit)', whole),
  };
}

function resolveLimits(value: unknown): LimitOptions {
  const defaults = DEFAULTS.limits;
  if (value === undefined) return { ...defaults };
  if (!isPlainObject(value)) fail('limits', 'an object like { requestBodyBytes, responseBodyBytes }', value);
  checkKeys('limits', value, ['requestBodyBytes', 'responseBodyBytes', 'requestBufferBytes']);
  const bytes = (n: number): boolean => Number.isSafeInteger(n) && n >= 0;
  const expected = 'a whole number of bytes (0 for no limit)';
  return {
    requestBodyBytes: positive('limits.requestBodyBytes', value.requestBodyBytes, defaults.requestBodyBytes, expected, bytes),
    responseBodyBytes: positive('limits.responseBodyBytes', value.responseBodyBytes, defaults.responseBodyBytes, expected, bytes),
    requestBufferBytes: positive('limits.requestBufferBytes', value.requestBufferBytes, defaults.requestBufferBytes, 'a whole number of bytes (0 to stream at once)', bytes),
  };
}

function resolveRegistry(value: unknown): UpstreamRegistry | null {
  if (value === undefined) return null;
  if (!(value instanceof UpstreamRegistry)) fail('registry', 'an UpstreamRegistry', value);
  return value;
}

const KNOWN = [
  'target',
  'name',
  'timeout',
  'changeOrigin',
  'failureStatuses',
  'status',
  'proxyName',
  'requestIdHeader',
  'dispatcher',
  'retry',
  'breaker',
  'registry',
  'trustProxy',
  'limits',
  'hooks',
  'balance',
  'outlierDetection',
  'healthCheck',
  'slowStart',
  'pathRewrite',
  'headers',
  'rewriteRedirects',
  'cookieDomainRewrite',
  'cookiePathRewrite',
  'transformResponse',
  'staleIfError',
  'adaptiveConcurrency',
  'deadline',
  'hedge',
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
  if (options.balance !== undefined && !BALANCES.includes(options.balance as Balance)) {
    fail('balance', `one of ${BALANCES.map((b) => `'${b}'`).join(', ')}`, options.balance);
  }
  if (options.changeOrigin !== undefined && typeof options.changeOrigin !== 'boolean') {
    fail('changeOrigin', 'a boolean', options.changeOrigin);
  }
  if (options.trustProxy !== undefined && typeof options.trustProxy !== 'boolean') {
    fail('trustProxy', 'a boolean', options.trustProxy);
  }
  if (options.rewriteRedirects !== undefined && typeof options.rewriteRedirects !== 'boolean') {
    fail('rewriteRedirects', 'a boolean', options.rewriteRedirects);
  }
  const headers = options.headers ?? {};
  if (!isPlainObject(headers)) fail('headers', 'an object like { request, response }', options.headers);
  checkKeys('headers', headers, ['request', 'response']);
  const proxyName = optionalString('proxyName', options.proxyName, TOKEN, 'an RFC 8941 token such as "gateway"');
  const requestIdHeader = optionalString('requestIdHeader', options.requestIdHeader, HEADER_NAME, 'a header name');
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
    balance: (options.balance as Balance | undefined) ?? DEFAULTS.balance,
    outlierDetection: freeze(resolveOutlier(options.outlierDetection)),
    healthCheck: freeze(resolveHealthCheck(options.healthCheck)),
    slowStart: duration('slowStart', options.slowStart, DEFAULTS.slowStart),
    pathRewrite: resolvePathRewrite(options.pathRewrite),
    requestHeaders: resolveHeaderPatch('headers.request', headers.request) as ResolvedOptions['requestHeaders'],
    responseHeaders: resolveHeaderPatch('headers.response', headers.response) as ResolvedOptions['responseHeaders'],
    rewriteRedirects: options.rewriteRedirects ?? DEFAULTS.rewriteRedirects,
    cookieDomainRewrite: resolveCookieRewrite('cookieDomainRewrite', options.cookieDomainRewrite),
    cookiePathRewrite: resolveCookieRewrite('cookiePathRewrite', options.cookiePathRewrite),
    transformResponse: resolveTransform(options.transformResponse),
    staleIfError: resolveStaleIfError(options.staleIfError),
    name,
    upstream: name ?? discovered?.discovery.source ?? targets.map((t) => t.origin).join(','),
    timeout,
    changeOrigin: options.changeOrigin ?? DEFAULTS.changeOrigin,
    failureStatuses: resolveFailureStatuses(options.failureStatuses),
    status: resolveStatus(options.status),
    proxyName: proxyName ?? DEFAULTS.proxyName,
    requestIdHeader: (requestIdHeader ?? DEFAULTS.requestIdHeader).toLowerCase(),
    dispatcher: resolveDispatcher(options.dispatcher),
    retry: resolveRetry(options.retry),
    breaker,
    trustProxy: options.trustProxy ?? DEFAULTS.trustProxy,
    limits: Object.freeze(resolveLimits(options.limits)),
    registry: resolveRegistry(options.registry) ?? defaultRegistry,
    hooks: Object.freeze(resolveHooks(options.hooks)),
    adaptiveConcurrency,
    deadline: resolveDeadline(options.deadline, timeout.total),
    hedge: resolveHedge(options.hedge),
  });
}

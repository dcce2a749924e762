// `resilient-proxy/otel`: an OpenTelemetry instrumentation in the shape of
// the official ones (`registerInstrumentations({ instrumentations: [new
// ResilientProxyInstrumentation()] })`). It patches no module: it subscribes
// to the proxy's own diagnostics_channel events when enabled and unsubscribes
// when disabled, so it works in an ESM app started without a loader hook.
//
// Traces: one CLIENT span per upstream attempt, a child of the span active
// when the attempt starts (the incoming request's, under an HTTP server
// instrumentation), after the HTTP client semantic conventions; the W3C
// trace context (or whatever propagator is set) is injected into every
// attempt's headers. Metrics: `http.client.request.duration` per attempt, and
// the resilience instruments (attempts and retries per host, refusals,
// budget, breaker state, hosts by state, panic, stale serves, exchange outcomes).

import {
  context,
  propagation,
  SpanKind,
  SpanStatusCode,
  trace,
  ValueType,
  type Attributes,
  type BatchObservableCallback,
  type Counter,
  type Histogram,
  type Meter,
  type ObservableCounter,
  type ObservableGauge,
  type Span,
} from '@opentelemetry/api';
import { InstrumentationBase, type InstrumentationConfig } from '@opentelemetry/instrumentation';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import {
  DIAGNOSTICS_CHANNELS,
  type AttemptMessage,
  type BudgetExhaustedMessage,
  type ExchangeMessage,
  type RefusalMessage,
} from './observe/channels.js';
import type { RetryEvent, StaleEvent } from './observe/hooks.js';
import { defaultRegistry, type UpstreamRegistry } from './upstream/registry.js';
import { VERSION } from './version.js';

export interface ResilientProxyInstrumentationConfig extends InstrumentationConfig {
  /**
   * The registries whose upstreams the gauges (`resilient_proxy.breaker.state`,
   * `resilient_proxy.hosts.ejected`) report. Default: `[defaultRegistry]`, the
   * one every proxy uses unless given its own `registry`.
   */
  registries?: readonly UpstreamRegistry[];
  /**
   * The per-attempt HTTP client signals: CLIENT spans, trace context injected
   * into the attempt's headers, and `http.client.request.duration`. Default
   * `true`. Set `false` to leave them to another instrumentation, such as
   * `@opentelemetry/instrumentation-undici`; the resilience metrics stay.
   * The propagator's headers a client sent (`traceparent`, `tracestate`) are
   * then removed from each attempt, so that the other instrumentation's are
   * the only ones the upstream gets.
   */
  httpClient?: boolean;
}

/** The instrumentation scope's name: the library's own. */
export const INSTRUMENTATION_NAME = 'resilient-proxy';

/** The names of the metric instruments, as OpenTelemetry names them (a Prometheus exporter turns dots into underscores). */
export const METRICS = Object.freeze({
  clientDuration: 'http.client.request.duration',
  exchanges: 'resilient_proxy.exchanges',
  attempts: 'resilient_proxy.attempts',
  retries: 'resilient_proxy.retries',
  budgetExhausted: 'resilient_proxy.retry.budget_exhausted',
  refused: 'resilient_proxy.requests.refused',
  staleServed: 'resilient_proxy.stale.served',
  breakerState: 'resilient_proxy.breaker.state',
  hostsEjected: 'resilient_proxy.hosts.ejected',
  hosts: 'resilient_proxy.hosts',
  panic: 'resilient_proxy.group.panic',
  panicPicks: 'resilient_proxy.group.panic_picks',
  concurrencyLimit: 'resilient_proxy.concurrency.limit',
  discoveryFailures: 'resilient_proxy.discovery.failures',
});

/** Every state `resilient_proxy.hosts` reports, each observed (0 included) so that a dashboard's series never vanish. */
const HOST_STATES = ['healthy', 'failing', 'ejected', 'unhealthy'] as const;

/** `resilient_proxy.breaker.state`'s values. */
export const BREAKER_STATE_VALUES = Object.freeze({ closed: 0, halfOpen: 1, open: 2 });

const UPSTREAM = 'resilient_proxy.upstream';
/** The host of the group an attempt went to (its origin): a bounded set, the group's own hosts. */
const HOST = 'resilient_proxy.host';
const FAILURE_CODE = 'resilient_proxy.failure.code';

/** The HTTP semantic conventions' known methods; anything else is `_OTHER`. */
/**
 * Query parameters whose values are credentials (signed URLs of S3, GCS,
 * Azure SAS): their values become `REDACTED` in `url.full`, as the HTTP
 * semantic conventions ask. Compared without case.
 */
const SECRET_PARAMETERS = new Set(['awsaccesskeyid', 'signature', 'sig', 'x-goog-signature', 'x-goog-credential', 'x-amz-signature', 'x-amz-credential', 'x-amz-security-token']);

/** `path` with the values of SECRET_PARAMETERS replaced by `REDACTED`; the rest as it was sent. */
function redactedPath(path: string): string {
  const mark = path.indexOf('?');
  if (mark === -1) return path;
  const query = path
    .slice(mark + 1)
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const raw = eq === -1 ? pair : pair.slice(0, eq);
      let name = raw;
      try {
        name = decodeURIComponent(raw.replace(/\+/g, ' '));
      } catch {
        // A malformed escape: compared as written.
      }
      return eq !== -1 && SECRET_PARAMETERS.has(name.toLowerCase()) ? `${raw}=REDACTED` : pair;
    });
  return `${path.slice(0, mark + 1)}${query.join('&')}`;
}

const KNOWN_METHODS = new Set(['CONNECT', 'DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT', 'QUERY', 'TRACE']);

/** The HTTP client semantic conventions' recommended buckets for `http.client.request.duration`, in seconds. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

interface Server {
  readonly address: string;
  readonly port: number;
  readonly scheme: string;
}

interface Instruments {
  readonly meter: Meter;
  readonly duration: Histogram;
  readonly exchanges: Counter;
  readonly attempts: Counter;
  readonly retries: Counter;
  readonly budgetExhausted: Counter;
  readonly refused: Counter;
  readonly staleServed: Counter;
  readonly breakerState: ObservableGauge;
  readonly hostsEjected: ObservableGauge;
  readonly hosts: ObservableGauge;
  readonly panic: ObservableGauge;
  readonly panicPicks: ObservableCounter;
  readonly concurrencyLimit: ObservableGauge;
  readonly discoveryFailures: ObservableGauge;
  readonly observe: BatchObservableCallback;
}

interface AttemptRecord {
  readonly span: Span;
  readonly method: string;
  readonly server: Server;
}

type Subscription = readonly [string, (message: unknown) => void];

/**
 * OpenTelemetry instrumentation for resilient-proxy. Register it like any
 * other (`registerInstrumentations`, or `new ResilientProxyInstrumentation()`
 * with `setTracerProvider`/`setMeterProvider`). Enabled on construction
 * unless `enabled: false`.
 */
export class ResilientProxyInstrumentation extends InstrumentationBase<ResilientProxyInstrumentationConfig> {
  // `declare`d, not initialised: the base constructor calls enable() and
  // _updateMetricInstruments() before this class's own fields would exist.
  declare private _subscriptions: Subscription[] | undefined;
  declare private _instruments: Instruments | undefined;
  declare private _attempts: WeakMap<AttemptMessage, AttemptRecord> | undefined;
  declare private _servers: Map<string, Server> | undefined;

  constructor(config: ResilientProxyInstrumentationConfig = {}) {
    super(INSTRUMENTATION_NAME, VERSION, config);
  }

  /** No module to patch: everything comes from the proxy's diagnostics channels. */
  protected override init(): void {
    return undefined;
  }

  override enable(): void {
    super.enable();
    if (this._subscriptions !== undefined) return;
    const subscriptions: Subscription[] = [
      [DIAGNOSTICS_CHANNELS.attemptStart, (message) => this.#guard(() => this.#onAttemptStart(message as AttemptMessage))],
      [DIAGNOSTICS_CHANNELS.attemptEnd, (message) => this.#guard(() => this.#onAttemptEnd(message as AttemptMessage))],
      [DIAGNOSTICS_CHANNELS.exchangeEnd, (message) => this.#guard(() => this.#onExchangeEnd(message as ExchangeMessage))],
      [DIAGNOSTICS_CHANNELS.retry, (message) => this.#guard(() => this.#onRetry(message as RetryEvent))],
      [DIAGNOSTICS_CHANNELS.refusal, (message) => this.#guard(() => this.#onRefusal(message as RefusalMessage))],
      [DIAGNOSTICS_CHANNELS.budgetExhausted, (message) => this.#guard(() => this.#onBudgetExhausted(message as BudgetExhaustedMessage))],
      [DIAGNOSTICS_CHANNELS.stale, (message) => this.#guard(() => this.#onStale(message as StaleEvent))],
    ];
    // By name: the channels are the process's, whichever copy of the proxy (ESM or CJS) publishes.
    for (const [name, listener] of subscriptions) subscribe(name, listener);
    this._subscriptions = subscriptions;
  }

  override disable(): void {
    super.disable();
    const subscriptions = this._subscriptions;
    this._subscriptions = undefined;
    if (subscriptions === undefined) return;
    for (const [name, listener] of subscriptions) unsubscribe(name, listener);
    // Attempts in flight are forgotten: their spans are never ended, so never exported.
    this._attempts = undefined;
  }

  protected override _updateMetricInstruments(): void {
    const previous = this._instruments;
    if (previous !== undefined) {
      previous.meter.removeBatchObservableCallback(previous.observe, [previous.breakerState, previous.hostsEjected, previous.hosts, previous.panic, previous.panicPicks, previous.concurrencyLimit, previous.discoveryFailures]);
    }
    const meter = this.meter;
    const counter = (name: string, unit: string, description: string): Counter => meter.createCounter(name, { unit, description, valueType: ValueType.INT });
    const gauge = (name: string, unit: string, description: string): ObservableGauge => meter.createObservableGauge(name, { unit, description, valueType: ValueType.INT });
    const breakerState = gauge(METRICS.breakerState, '{state}', 'The state of the upstream’s circuit breaker: 0 closed, 1 half-open, 2 open.');
    const hostsEjected = gauge(METRICS.hostsEjected, '{host}', 'Hosts of the upstream’s group ejected now (outlier detection or their own Retry-After).');
    const hosts = gauge(
      METRICS.hosts,
      '{host}',
      'Hosts of the upstream’s group by state: healthy, failing (kept in by maxEjectionPercent), ejected, unhealthy (active health checks).',
    );
    const panic = gauge(METRICS.panic, '{state}', 'Whether the upstream’s group is in panic mode: 1 when fewer than half its hosts are in rotation, so every host takes traffic.');
    const panicPicks = meter.createObservableCounter(METRICS.panicPicks, { unit: '{pick}', description: 'Hosts picked in panic mode since the start.', valueType: ValueType.INT });
    const concurrencyLimit = gauge(
      METRICS.concurrencyLimit,
      '{attempt}',
      'The most attempts the proxy lets be in flight to the upstream now: the adaptive limit, or the fixed breaker.capacity.',
    );
    const discoveryFailures = gauge(
      METRICS.discoveryFailures,
      '{refresh}',
      'Failed refreshes in a row of a discovered group (DNS or discover); above 0, the group runs on its last good hosts.',
    );
    const observe: BatchObservableCallback = (result) => {
      if (!this.isEnabled()) return;
      for (const registry of this.getConfig().registries ?? [defaultRegistry]) {
        for (const upstream of registry.snapshot()) {
          const attributes = { [UPSTREAM]: upstream.upstream };
          if (upstream.state !== 'disabled') result.observe(breakerState, BREAKER_STATE_VALUES[upstream.state], attributes);
          const counts = { healthy: 0, failing: 0, ejected: 0, unhealthy: 0 };
          for (const host of upstream.hosts) counts[host.state] += 1;
          result.observe(hostsEjected, counts.ejected, attributes);
          for (const state of HOST_STATES) result.observe(hosts, counts[state], { ...attributes, 'resilient_proxy.host.state': state });
          result.observe(panic, upstream.panic ? 1 : 0, attributes);
          result.observe(panicPicks, upstream.panics, attributes);
          if (upstream.capacity !== null) result.observe(concurrencyLimit, upstream.capacity, attributes);
          if (upstream.discovery !== null) result.observe(discoveryFailures, upstream.discovery.failures, attributes);
        }
      }
    };
    meter.addBatchObservableCallback(observe, [breakerState, hostsEjected, hosts, panic, panicPicks, concurrencyLimit, discoveryFailures]);
    this._instruments = {
      meter,
      concurrencyLimit,
      duration: meter.createHistogram(METRICS.clientDuration, {
        unit: 's',
        description: 'Duration of HTTP client requests: one per upstream attempt.',
        valueType: ValueType.DOUBLE,
        advice: { explicitBucketBoundaries: DURATION_BUCKETS },
      }),
      exchanges: counter(METRICS.exchanges, '{request}', 'Client requests the proxy ended, by outcome and failure code.'),
      attempts: counter(METRICS.attempts, '{attempt}', 'Upstream attempts, by host, outcome and failure code.'),
      retries: counter(METRICS.retries, '{retry}', 'Retries made, by the host and failure code of the attempt retried.'),
      budgetExhausted: counter(METRICS.budgetExhausted, '{retry}', 'Retries the retry budget refused.'),
      refused: counter(METRICS.refused, '{request}', 'Calls the proxy refused to make: circuit open or capacity reached.'),
      staleServed: counter(METRICS.staleServed, '{response}', 'Failures answered with a kept response (staleIfError).'),
      breakerState,
      hostsEjected,
      hosts,
      panic,
      panicPicks,
      discoveryFailures,
      observe,
    };
  }

  /** A subscriber that throws would become an uncaught exception in the app: never. */
  #guard(handle: () => void): void {
    try {
      handle();
    } catch (error) {
      this._diag.error('resilient-proxy instrumentation failed on an event', error);
    }
  }

  #server(origin: string): Server {
    const servers = (this._servers ??= new Map<string, Server>());
    let server = servers.get(origin);
    if (server === undefined) {
      const url = new URL(origin);
      const scheme = url.protocol.slice(0, -1);
      server = { address: url.hostname.replace(/^\[|\]$/g, ''), port: url.port === '' ? (scheme === 'https' ? 443 : 80) : Number(url.port), scheme };
      // A bounded cache: origins change only with setTargets.
      if (servers.size >= 1024) servers.clear();
      servers.set(origin, server);
    }
    return server;
  }

  #onAttemptStart(message: AttemptMessage): void {
    if (this.getConfig().httpClient === false) {
      // Another instrumentation injects (undici's appends its header): a
      // client's own traceparent, forwarded as is, would make two.
      for (const field of propagation.fields()) Reflect.deleteProperty(message.headers, field);
      return;
    }
    const method = KNOWN_METHODS.has(message.method) ? message.method : '_OTHER';
    const server = this.#server(message.origin);
    const attributes: Attributes = {
      'http.request.method': method,
      'server.address': server.address,
      'server.port': server.port,
      // The origin never carries credentials: the proxy refuses a target with them.
      'url.full': message.origin + redactedPath(message.path),
      'url.scheme': server.scheme,
      [UPSTREAM]: message.upstream,
    };
    if (method === '_OTHER') attributes['http.request.method_original'] = message.method;
    if (message.attempt > 1) attributes['http.request.resend_count'] = message.attempt - 1;
    if (message.hedge) attributes['resilient_proxy.attempt.hedge'] = true;
    const parent = context.active();
    const span = this.tracer.startSpan(method === '_OTHER' ? 'HTTP' : method, { kind: SpanKind.CLIENT, attributes }, parent);
    propagation.inject(trace.setSpan(parent, span), message.headers);
    (this._attempts ??= new WeakMap()).set(message, { span, method, server });
  }

  #onAttemptEnd(message: AttemptMessage): void {
    const instruments = this._instruments;
    const { upstream, outcome, statusCode, code } = message;
    const attemptAttributes: Attributes = { [UPSTREAM]: upstream, [HOST]: message.origin, 'resilient_proxy.attempt.outcome': outcome ?? 'failed' };
    if (code !== null) attemptAttributes[FAILURE_CODE] = code;
    if (message.hedge) attemptAttributes['resilient_proxy.attempt.hedge'] = true;
    instruments?.attempts.add(1, attemptAttributes);

    const record = this._attempts?.get(message);
    if (record === undefined) return;
    this._attempts?.delete(message);
    // The conventions' error.type: the status code for a 4xx/5xx answer, else
    // a low-cardinality identifier of the failure: the proxy's failure code.
    let errorType: string | null = null;
    if (outcome === 'failed') errorType = code;
    else if (statusCode !== null && statusCode >= 400) errorType = String(statusCode);
    const { span, server, method } = record;
    if (statusCode !== null) span.setAttribute('http.response.status_code', statusCode);
    if (code !== null) span.setAttribute(FAILURE_CODE, code);
    span.setAttribute('resilient_proxy.attempt.outcome', outcome ?? 'failed');
    if (errorType !== null) {
      span.setAttribute('error.type', errorType);
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
    if (outcome === 'failed' && message.error instanceof Error) span.recordException(message.error);
    span.end();
    const metricAttributes: Attributes = {
      'http.request.method': method,
      'server.address': server.address,
      'server.port': server.port,
      'url.scheme': server.scheme,
      [UPSTREAM]: upstream,
    };
    if (statusCode !== null) metricAttributes['http.response.status_code'] = statusCode;
    if (errorType !== null) metricAttributes['error.type'] = errorType;
    instruments?.duration.record((message.duration ?? 0) / 1000, metricAttributes);
  }

  #onExchangeEnd(message: ExchangeMessage): void {
    const attributes: Attributes = { [UPSTREAM]: message.upstream, 'resilient_proxy.outcome': message.outcome ?? 'client-gone' };
    if (message.code !== null) attributes[FAILURE_CODE] = message.code;
    this._instruments?.exchanges.add(1, attributes);
  }

  #onRetry(event: RetryEvent): void {
    this._instruments?.retries.add(1, { [UPSTREAM]: event.upstream, [HOST]: event.target, [FAILURE_CODE]: event.code });
  }

  #onRefusal(message: RefusalMessage): void {
    this._instruments?.refused.add(1, { [UPSTREAM]: message.upstream, 'resilient_proxy.refusal.reason': message.reason });
  }

  #onBudgetExhausted(message: BudgetExhaustedMessage): void {
    this._instruments?.budgetExhausted.add(1, { [UPSTREAM]: message.upstream, [FAILURE_CODE]: message.code });
  }

  #onStale(event: StaleEvent): void {
    this._instruments?.staleServed.add(1, { [UPSTREAM]: event.upstream, [FAILURE_CODE]: event.code });
  }
}

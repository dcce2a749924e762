// resilient-proxy/otel with the real OpenTelemetry SDK: an in-memory span
// exporter, a metric reader collected on demand, the W3C propagator and the
// AsyncLocalStorage context manager. The gateway opens a SERVER span per
// request, as an HTTP server instrumentation would, so CLIENT spans have the
// incoming request's span as parent.

import { once } from 'node:events';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { context, metrics, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type TracerProvider } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';
import { DataPointType, MeterProvider, MetricReader, type Histogram } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProxyOptions } from '../src/index.js';
import { ResilientProxyInstrumentation, type ResilientProxyInstrumentationConfig } from '../src/otel.js';
import { faults, refusedUrl } from '../src/testing/index.js';
import { listen, onCleanup, proxy, testRegistry, upstream } from './support.js';

/** A reader whose metrics a test collects when it wants them. */
class OnDemandReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

interface Point {
  readonly attributes: Attributes;
  /** A sum's or gauge's value, or a histogram's count. */
  readonly value: number;
}

/** The points of `name` in the instrumentation's scope, by attributes. */
async function collect(reader: MetricReader, scope = 'resilient-proxy'): Promise<Map<string, Point[]>> {
  const { resourceMetrics } = await reader.collect();
  const found = new Map<string, Point[]>();
  for (const scoped of resourceMetrics.scopeMetrics) {
    if (scoped.scope.name !== scope) continue;
    for (const metric of scoped.metrics) {
      const points = metric.dataPoints.map((point) => ({
        attributes: point.attributes,
        value: metric.dataPointType === DataPointType.HISTOGRAM ? (point.value as Histogram).count : (point.value as number),
      }));
      if (points.length > 0) found.set(metric.descriptor.name, points);
    }
  }
  return found;
}

function sorted(points: readonly Point[] | undefined): Point[] {
  return [...(points ?? [])].sort((a, b) => JSON.stringify(a.attributes).localeCompare(JSON.stringify(b.attributes)));
}

interface Telemetry {
  readonly exporter: InMemorySpanExporter;
  readonly reader: OnDemandReader;
  readonly tracerProvider: BasicTracerProvider;
  readonly meterProvider: MeterProvider;
}

function telemetry(): Telemetry {
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const reader = new OnDemandReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  onCleanup(async () => {
    await tracerProvider.shutdown();
    await meterProvider.shutdown();
  });
  return { exporter, reader, tracerProvider, meterProvider };
}

function instrument(t: Telemetry, config: ResilientProxyInstrumentationConfig = {}): ResilientProxyInstrumentation {
  const instrumentation = new ResilientProxyInstrumentation(config);
  instrumentation.setTracerProvider(t.tracerProvider);
  instrumentation.setMeterProvider(t.meterProvider);
  onCleanup(() => instrumentation.disable());
  return instrumentation;
}

/**
 * A gateway that opens a SERVER span per request, the incoming request's
 * trace context as its parent, as an HTTP server instrumentation does.
 * `served()` resolves when every request so far has ended its span.
 */
async function tracedGateway(tracerProvider: TracerProvider, options: ProxyOptions): Promise<{ url: string; served: () => Promise<void> }> {
  const handler = proxy(options);
  const tracer = tracerProvider.getTracer('test-server');
  const ends: Promise<void>[] = [];
  const listener: RequestListener = (req: IncomingMessage, res: ServerResponse) => {
    const parent = propagation.extract(ROOT_CONTEXT, req.headers);
    const span = tracer.startSpan(req.method ?? 'GET', { kind: SpanKind.SERVER }, parent);
    ends.push(once(res, 'close').then(() => span.end()));
    context.with(trace.setSpan(parent, span), () => handler(req, res));
  };
  const { url } = await listen(listener);
  return {
    url,
    served: async () => {
      await Promise.all(ends);
    },
  };
}

const clientSpans = (exporter: InMemorySpanExporter): ReadableSpan[] => exporter.getFinishedSpans().filter((span) => span.kind === SpanKind.CLIENT);
const serverSpans = (exporter: InMemorySpanExporter): ReadableSpan[] => exporter.getFinishedSpans().filter((span) => span.kind === SpanKind.SERVER);

beforeAll(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
});

afterAll(() => {
  context.disable();
  propagation.disable();
});

describe('ResilientProxyInstrumentation: traces', () => {
  it("url.full carries no signed URL's credentials: their values are REDACTED (semantic conventions), the rest as sent", async () => {
    const t = telemetry();
    instrument(t);
    const up = await upstream();
    const gateway = await tracedGateway(t.tracerProvider, { target: up.url, retry: false });
    const query =
      'a=1&sig=s1&Signature=s2&X-Amz-Signature=s3&X-Goog-Signature=s4&AWSAccessKeyId=k1&X-Amz-Credential=k2&X-Amz-Security-Token=t1&x-amz-signature=s5&X%2DAmz%2DSignature=s6&signature&b=sig';

    const response = await fetch(`${gateway.url}/file?${query}`);
    await response.text();
    await gateway.served();

    expect(up.requests[0]?.url).toBe(`/file?${query}`);
    expect(clientSpans(t.exporter).map((span) => span.attributes['url.full'])).toStrictEqual([
      `${up.url}/file?a=1&sig=REDACTED&Signature=REDACTED&X-Amz-Signature=REDACTED&X-Goog-Signature=REDACTED&AWSAccessKeyId=REDACTED&X-Amz-Credential=REDACTED&X-Amz-Security-Token=REDACTED&x-amz-signature=REDACTED&X%2DAmz%2DSignature=REDACTED&signature&b=sig`,
    ]);
  });

  it('a GET retried once: two CLIENT spans under the incoming request, resend_count 1 on the second, one trace id the upstream saw on both attempts', async () => {
    const t = telemetry();
    instrument(t);
    const up = await upstream();
    up.enqueue(faults.status(503));
    const gateway = await tracedGateway(t.tracerProvider, { target: up.url, name: 'orders', retry: { minDelay: 1, maxDelay: 1 } });

    const response = await fetch(`${gateway.url}/items?page=2`);
    expect(response.status).toBe(200);
    await response.text();
    await gateway.served();

    const [server] = serverSpans(t.exporter);
    const clients = clientSpans(t.exporter);
    expect(clients).toHaveLength(2);
    const [first, second] = clients as [ReadableSpan, ReadableSpan];
    const common = {
      'http.request.method': 'GET',
      'server.address': '127.0.0.1',
      'server.port': up.port,
      'url.full': `${up.url}/items?page=2`,
      'url.scheme': 'http',
      'resilient_proxy.upstream': 'orders',
    };
    expect(first.name).toBe('GET');
    expect(first.attributes).toStrictEqual({
      ...common,
      'http.response.status_code': 503,
      'resilient_proxy.failure.code': 'UPSTREAM_STATUS',
      'resilient_proxy.attempt.outcome': 'status',
      'error.type': '503',
    });
    expect(first.status.code).toBe(SpanStatusCode.ERROR);
    expect(second.name).toBe('GET');
    expect(second.attributes).toStrictEqual({
      ...common,
      'http.request.resend_count': 1,
      'http.response.status_code': 200,
      'resilient_proxy.attempt.outcome': 'delivered',
    });
    expect(second.status.code).toBe(SpanStatusCode.UNSET);
    const traceId = server?.spanContext().traceId;
    for (const span of clients) {
      expect(span.spanContext().traceId).toBe(traceId);
      expect(span.parentSpanContext?.spanId).toBe(server?.spanContext().spanId);
    }
    expect(up.requests.map((r) => r.headers.traceparent)).toStrictEqual(clients.map((span) => `00-${traceId ?? ''}-${span.spanContext().spanId}-01`));
  });

  it('a client trace context goes on: the incoming traceparent is the parent, and the upstream gets a child of it', async () => {
    const t = telemetry();
    instrument(t);
    const up = await upstream();
    const gateway = await tracedGateway(t.tracerProvider, { target: up.url, name: 'orders' });
    const incoming = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    await (await fetch(`${gateway.url}/x`, { headers: { traceparent: incoming } })).text();
    await gateway.served();
    const [client] = clientSpans(t.exporter);
    expect(client?.spanContext().traceId).toBe('0af7651916cd43dd8448eb211c80319c');
    expect(up.requests[0]?.headers.traceparent).toBe(`00-0af7651916cd43dd8448eb211c80319c-${client?.spanContext().spanId ?? ''}-01`);
  });

  it('a connection refused: the span has error.type set to the failure code, no status code, and the exception', async () => {
    const t = telemetry();
    instrument(t);
    const target = await refusedUrl();
    const gateway = await tracedGateway(t.tracerProvider, { target, name: 'down', retry: false });
    expect((await fetch(`${gateway.url}/x`)).status).toBe(502);
    await gateway.served();
    const [client] = clientSpans(t.exporter);
    expect(client?.attributes).toMatchObject({ 'error.type': 'UPSTREAM_CONNECT_REFUSED', 'resilient_proxy.failure.code': 'UPSTREAM_CONNECT_REFUSED', 'resilient_proxy.attempt.outcome': 'failed' });
    expect(client?.attributes['http.response.status_code']).toBeUndefined();
    expect(client?.status.code).toBe(SpanStatusCode.ERROR);
    expect(client?.events.map((event) => event.name)).toStrictEqual(['exception']);
  });
});

describe('ResilientProxyInstrumentation: metrics', () => {
  it('a GET retried once: the duration per attempt, attempts, one retry, one delivered exchange', async () => {
    const t = telemetry();
    instrument(t);
    const up = await upstream();
    up.enqueue(faults.status(503));
    const gateway = await tracedGateway(t.tracerProvider, { target: up.url, name: 'orders', retry: { minDelay: 1, maxDelay: 1 }, registry: testRegistry() });
    await (await fetch(`${gateway.url}/items`)).text();
    await gateway.served();

    const found = await collect(t.reader);
    const server = { 'http.request.method': 'GET', 'server.address': '127.0.0.1', 'server.port': up.port, 'url.scheme': 'http', 'resilient_proxy.upstream': 'orders' };
    expect(sorted(found.get('http.client.request.duration'))).toStrictEqual(
      sorted([
        { attributes: { ...server, 'http.response.status_code': 503, 'error.type': '503' }, value: 1 },
        { attributes: { ...server, 'http.response.status_code': 200 }, value: 1 },
      ]),
    );
    expect(sorted(found.get('resilient_proxy.attempts'))).toStrictEqual(
      sorted([
        { attributes: { 'resilient_proxy.upstream': 'orders', 'resilient_proxy.host': up.url, 'resilient_proxy.attempt.outcome': 'status', 'resilient_proxy.failure.code': 'UPSTREAM_STATUS' }, value: 1 },
        { attributes: { 'resilient_proxy.upstream': 'orders', 'resilient_proxy.host': up.url, 'resilient_proxy.attempt.outcome': 'delivered' }, value: 1 },
      ]),
    );
    expect(found.get('resilient_proxy.retries')).toStrictEqual([{ attributes: { 'resilient_proxy.upstream': 'orders', 'resilient_proxy.host': up.url, 'resilient_proxy.failure.code': 'UPSTREAM_STATUS' }, value: 1 }]);
    expect(found.get('resilient_proxy.exchanges')).toStrictEqual([{ attributes: { 'resilient_proxy.upstream': 'orders', 'resilient_proxy.outcome': 'delivered' }, value: 1 }]);
    expect(found.has('resilient_proxy.requests.refused')).toBe(false);
    // Upstreams of another registry are not in the gauges: the instrumentation reads defaultRegistry only.
    expect(found.has('resilient_proxy.breaker.state')).toBe(false);
  });

  it('a hedge that wins: its CLIENT span and its attempts point carry resilient_proxy.attempt.hedge, the cancelled first attempt neither', async () => {
    const t = telemetry();
    instrument(t);
    // The first request to arrive, whichever host it reaches, never answers; the hedge's is answered.
    let arrivals = 0;
    const answering = (_req: IncomingMessage, res: ServerResponse): void => {
      arrivals += 1;
      if (arrivals > 1) res.writeHead(200, { 'content-length': '2' }).end('ok');
    };
    const hosts = [await listen(answering), await listen(answering)];
    const gateway = await tracedGateway(t.tracerProvider, { target: hosts.map((h) => h.url), name: 'catalog', hedge: { delay: 20 }, registry: testRegistry() });
    const response = await fetch(`${gateway.url}/items`);
    expect(await response.text()).toBe('ok');
    await gateway.served();

    const clients = clientSpans(t.exporter);
    expect(clients).toHaveLength(2);
    const hedged = clients.filter((span) => span.attributes['resilient_proxy.attempt.hedge'] === true);
    expect(hedged.map((span) => span.attributes['resilient_proxy.attempt.outcome'])).toStrictEqual(['delivered']);
    const first = clients.find((span) => span.attributes['resilient_proxy.attempt.hedge'] === undefined);
    expect(first?.attributes['resilient_proxy.attempt.outcome']).toBe('cancelled');
    const found = await collect(t.reader);
    const attempts = (found.get('resilient_proxy.attempts') ?? []).filter((point) => point.attributes['resilient_proxy.upstream'] === 'catalog');
    expect(attempts.map((point) => [point.attributes['resilient_proxy.attempt.outcome'], point.attributes['resilient_proxy.attempt.hedge'] ?? false, point.value]).sort()).toStrictEqual([
      ['cancelled', false, 1],
      ['delivered', true, 1],
    ]);
  });

  it('a request refused with the circuit open: no CLIENT span, one refusal, the breaker gauge at 2 (open)', async () => {
    const t = telemetry();
    const registry = testRegistry();
    instrument(t, { registries: [registry] });
    const up = await upstream({ fallback: faults.status(503) });
    const gateway = await tracedGateway(t.tracerProvider, { target: up.url, name: 'orders', retry: false, registry, breaker: { volumeThreshold: 1, errorThresholdPercentage: 1 } });
    expect((await fetch(`${gateway.url}/a`)).status).toBe(502);
    expect(registry.get('orders')?.state).toBe('open');
    const refused = await fetch(`${gateway.url}/b`);
    expect(refused.status).toBe(502);
    expect(((await refused.json()) as { code: string }).code).toBe('CIRCUIT_OPEN');
    await gateway.served();

    expect(clientSpans(t.exporter)).toHaveLength(1);
    expect(serverSpans(t.exporter)).toHaveLength(2);
    const found = await collect(t.reader);
    expect(found.get('resilient_proxy.requests.refused')).toStrictEqual([{ attributes: { 'resilient_proxy.upstream': 'orders', 'resilient_proxy.refusal.reason': 'circuit_open' }, value: 1 }]);
    expect(found.get('resilient_proxy.breaker.state')).toStrictEqual([{ attributes: { 'resilient_proxy.upstream': 'orders' }, value: 2 }]);
    expect(found.get('resilient_proxy.hosts.ejected')).toStrictEqual([{ attributes: { 'resilient_proxy.upstream': 'orders' }, value: 0 }]);
    expect(sorted(found.get('resilient_proxy.exchanges'))).toStrictEqual(
      sorted([
        { attributes: { 'resilient_proxy.upstream': 'orders', 'resilient_proxy.outcome': 'contract', 'resilient_proxy.failure.code': 'UPSTREAM_STATUS' }, value: 1 },
        { attributes: { 'resilient_proxy.upstream': 'orders', 'resilient_proxy.outcome': 'contract', 'resilient_proxy.failure.code': 'CIRCUIT_OPEN' }, value: 1 },
      ]),
    );
    expect(found.get('resilient_proxy.attempts')).toHaveLength(1);
  });

  it('an ejected host shows in resilient_proxy.hosts.ejected and resilient_proxy.hosts by state; attempts and retries per host; a retry the budget refused in resilient_proxy.retry.budget_exhausted', async () => {
    const t = telemetry();
    const registry = testRegistry();
    instrument(t, { registries: [registry] });
    const up = await upstream();
    const refused = await refusedUrl();
    const group = await tracedGateway(t.tracerProvider, { target: [refused, up.url], name: 'group', registry, balance: 'round-robin', outlierDetection: { consecutiveFailures: 1 }, retry: { minDelay: 1, maxDelay: 1 } });
    expect((await fetch(`${group.url}/x`)).status).toBe(200);
    const poor = await upstream({ fallback: faults.status(503) });
    const budget = await tracedGateway(t.tracerProvider, { target: poor.url, name: 'poor', registry, breaker: false, retry: { budget: { maxTokens: 0 } } });
    expect((await fetch(`${budget.url}/x`)).status).toBe(502);
    await group.served();
    await budget.served();

    const found = await collect(t.reader);
    expect(sorted(found.get('resilient_proxy.hosts.ejected'))).toStrictEqual(
      sorted([
        { attributes: { 'resilient_proxy.upstream': 'group' }, value: 1 },
        { attributes: { 'resilient_proxy.upstream': 'poor' }, value: 0 },
      ]),
    );
    // `poor` runs without a breaker: no breaker series for it.
    expect(found.get('resilient_proxy.breaker.state')).toStrictEqual([{ attributes: { 'resilient_proxy.upstream': 'group' }, value: 0 }]);
    expect(found.get('resilient_proxy.retry.budget_exhausted')).toStrictEqual([{ attributes: { 'resilient_proxy.upstream': 'poor', 'resilient_proxy.failure.code': 'UPSTREAM_STATUS' }, value: 1 }]);
    expect(found.get('resilient_proxy.retries')).toStrictEqual([{ attributes: { 'resilient_proxy.upstream': 'group', 'resilient_proxy.host': refused, 'resilient_proxy.failure.code': 'UPSTREAM_CONNECT_REFUSED' }, value: 1 }]);
    const inGroup = { 'resilient_proxy.upstream': 'group' };
    expect(sorted(found.get('resilient_proxy.hosts')?.filter((point) => point.attributes['resilient_proxy.upstream'] === 'group'))).toStrictEqual(
      sorted([
        { attributes: { ...inGroup, 'resilient_proxy.host.state': 'healthy' }, value: 1 },
        { attributes: { ...inGroup, 'resilient_proxy.host.state': 'failing' }, value: 0 },
        { attributes: { ...inGroup, 'resilient_proxy.host.state': 'ejected' }, value: 1 },
        { attributes: { ...inGroup, 'resilient_proxy.host.state': 'unhealthy' }, value: 0 },
      ]),
    );
    expect(sorted(found.get('resilient_proxy.attempts')?.filter((point) => point.attributes['resilient_proxy.upstream'] === 'group'))).toStrictEqual(
      sorted([
        { attributes: { ...inGroup, 'resilient_proxy.host': refused, 'resilient_proxy.attempt.outcome': 'failed', 'resilient_proxy.failure.code': 'UPSTREAM_CONNECT_REFUSED' }, value: 1 },
        { attributes: { ...inGroup, 'resilient_proxy.host': up.url, 'resilient_proxy.attempt.outcome': 'delivered' }, value: 1 },
      ]),
    );
    expect(found.get('resilient_proxy.group.panic')?.find((point) => point.attributes['resilient_proxy.upstream'] === 'group')?.value).toBe(0);
    expect(found.get('resilient_proxy.group.panic_picks')?.find((point) => point.attributes['resilient_proxy.upstream'] === 'group')?.value).toBe(0);
  });

  it('resilient_proxy.concurrency.limit shows the adaptive limit now, or the fixed breaker.capacity, and nothing without a limit', async () => {
    const t = telemetry();
    const registry = testRegistry();
    instrument(t, { registries: [registry] });
    const up = await upstream();
    const adaptive = await tracedGateway(t.tracerProvider, { target: up.url, name: 'adaptive', registry, adaptiveConcurrency: { initial: 30, min: 30, max: 30 } });
    const fixed = await tracedGateway(t.tracerProvider, { target: up.url, name: 'fixed', registry, breaker: { capacity: 7 } });
    const none = await tracedGateway(t.tracerProvider, { target: up.url, name: 'none', registry });
    for (const gateway of [adaptive, fixed, none]) expect((await fetch(`${gateway.url}/x`)).status).toBe(200);

    const found = await collect(t.reader);
    expect(sorted(found.get('resilient_proxy.concurrency.limit'))).toStrictEqual(
      sorted([
        { attributes: { 'resilient_proxy.upstream': 'adaptive' }, value: 30 },
        { attributes: { 'resilient_proxy.upstream': 'fixed' }, value: 7 },
      ]),
    );
  });

  it('a failure hidden by a kept response counts in resilient_proxy.stale.served', async () => {
    const t = telemetry();
    instrument(t);
    const up = await upstream();
    up.enqueue(faults.respond(200, 'kept', { 'cache-control': 'max-age=60' }), faults.status(503));
    const gateway = await tracedGateway(t.tracerProvider, { target: up.url, name: 'catalog', retry: false, staleIfError: true });
    await (await fetch(`${gateway.url}/item`)).text();
    expect(await (await fetch(`${gateway.url}/item`)).text()).toBe('kept');
    await gateway.served();
    const found = await collect(t.reader);
    expect(found.get('resilient_proxy.stale.served')).toStrictEqual([{ attributes: { 'resilient_proxy.upstream': 'catalog', 'resilient_proxy.failure.code': 'UPSTREAM_STATUS' }, value: 1 }]);
    expect(sorted(found.get('resilient_proxy.exchanges'))).toStrictEqual(
      sorted([
        { attributes: { 'resilient_proxy.upstream': 'catalog', 'resilient_proxy.outcome': 'delivered' }, value: 1 },
        { attributes: { 'resilient_proxy.upstream': 'catalog', 'resilient_proxy.outcome': 'stale', 'resilient_proxy.failure.code': 'UPSTREAM_STATUS' }, value: 1 },
      ]),
    );
  });

  it('a discovered group that cannot refresh shows its failures in a row in resilient_proxy.discovery.failures', async () => {
    const t = telemetry();
    const registry = testRegistry();
    instrument(t, { registries: [registry] });
    const failed = new Promise<void>((resolve) => {
      proxy({
        name: 'discovered',
        registry,
        // One list, then the registry fails; the next try is a minute away.
        target: {
          backoff: { min: 60_000 },
          async *discover() {
            yield await Promise.resolve(['http://127.0.0.1:1']);
            throw new Error('registry down');
          },
        },
        hooks: { onDiscovery: (event) => event.kind === 'failed' && resolve() },
      });
    });
    proxy({ target: 'http://127.0.0.1:1', name: 'fixed', registry });
    await failed;
    const found = await collect(t.reader);
    // A fixed list has no series.
    expect(found.get('resilient_proxy.discovery.failures')).toStrictEqual([{ attributes: { 'resilient_proxy.upstream': 'discovered' }, value: 1 }]);
  });
});

describe('ResilientProxyInstrumentation: lifecycle', () => {
  it('disable() stops everything: no span, no trace context sent, no metric change (gauges no longer observed); enable() starts again', async () => {
    const t = telemetry();
    const registry = testRegistry();
    const instrumentation = instrument(t, { registries: [registry] });
    const up = await upstream();
    const gateway = await tracedGateway(t.tracerProvider, { target: up.url, name: 'orders', registry });
    await (await fetch(`${gateway.url}/1`)).text();
    await gateway.served();
    const before = await collect(t.reader);
    expect(before.get('resilient_proxy.breaker.state')).toStrictEqual([{ attributes: { 'resilient_proxy.upstream': 'orders' }, value: 0 }]);

    instrumentation.disable();
    expect(instrumentation.isEnabled()).toBe(false);
    up.enqueue(faults.status(503));
    await (await fetch(`${gateway.url}/2`)).text();
    await gateway.served();
    const after = await collect(t.reader);
    expect(clientSpans(t.exporter)).toHaveLength(1);
    expect(up.requests.map((r) => r.headers.traceparent !== undefined)).toStrictEqual([true, false, false]);
    // The gauges are not observed any more; with cumulative temporality the SDK keeps their last value.
    expect(after).toStrictEqual(before);

    instrumentation.enable();
    instrumentation.enable();
    await (await fetch(`${gateway.url}/3`)).text();
    await gateway.served();
    expect(clientSpans(t.exporter)).toHaveLength(2);
    expect(up.requests[3]?.headers.traceparent).toBeDefined();
    expect((await collect(t.reader)).get('resilient_proxy.exchanges')).toStrictEqual([{ attributes: { 'resilient_proxy.upstream': 'orders', 'resilient_proxy.outcome': 'delivered' }, value: 2 }]);
  });

  it('registerInstrumentations with the global tracer and meter providers; `enabled: false` subscribes to nothing until enable()', async () => {
    const t = telemetry();
    trace.setGlobalTracerProvider(t.tracerProvider);
    metrics.setGlobalMeterProvider(t.meterProvider);
    onCleanup(() => {
      trace.disable();
      metrics.disable();
    });
    const registry = testRegistry();
    const idle = new ResilientProxyInstrumentation({ enabled: false });
    idle.setTracerProvider(t.tracerProvider);
    expect(idle.isEnabled()).toBe(false);
    const instrumentation = new ResilientProxyInstrumentation({ registries: [registry] });
    const unregister = registerInstrumentations({ instrumentations: [instrumentation] });
    onCleanup(unregister);
    expect(instrumentation.instrumentationName).toBe('resilient-proxy');
    const up = await upstream();
    const gateway = await tracedGateway(t.tracerProvider, { target: up.url, name: 'orders', registry });
    await (await fetch(`${gateway.url}/x`)).text();
    await gateway.served();
    // One span: the idle instrumentation, given the same provider, made none.
    expect(clientSpans(t.exporter)).toHaveLength(1);
    const [client] = clientSpans(t.exporter);
    expect(client?.instrumentationScope.name).toBe('resilient-proxy');
    expect((await collect(t.reader)).get('resilient_proxy.exchanges')).toStrictEqual([{ attributes: { 'resilient_proxy.upstream': 'orders', 'resilient_proxy.outcome': 'delivered' }, value: 1 }]);

    unregister();
    await (await fetch(`${gateway.url}/y`)).text();
    await gateway.served();
    expect(clientSpans(t.exporter)).toHaveLength(1);
  });
});

describe('with @opentelemetry/instrumentation-undici', () => {
  function undici(t: Telemetry): UndiciInstrumentation {
    const instrumentation = new UndiciInstrumentation();
    instrumentation.setTracerProvider(t.tracerProvider);
    instrumentation.setMeterProvider(t.meterProvider);
    onCleanup(() => instrumentation.disable());
    return instrumentation;
  }

  it('both on: two CLIENT spans for one attempt, and the upstream gets two traceparent values (so W3C says to ignore them)', async () => {
    const t = telemetry();
    instrument(t);
    undici(t);
    const up = await upstream();
    const gateway = await tracedGateway(t.tracerProvider, { target: up.url, name: 'orders' });
    await (await fetch(`${gateway.url}/x`)).text();
    await gateway.served();
    // undici's instrumentation also sees the test's own fetch (Node's bundled undici): only the upstream's count.
    const clients = clientSpans(t.exporter).filter((span) => span.attributes['server.port'] === up.port);
    expect(clients.map((span) => span.instrumentationScope.name).sort()).toStrictEqual(['@opentelemetry/instrumentation-undici', 'resilient-proxy']);
    expect(String(up.requests[0]?.headers.traceparent).split(', ')).toHaveLength(2);
  });

  it('ours with httpClient: false: undici’s span and traceparent alone, and the resilience metrics still counted', async () => {
    const t = telemetry();
    instrument(t, { httpClient: false });
    undici(t);
    const up = await upstream();
    up.enqueue(faults.status(503));
    const gateway = await tracedGateway(t.tracerProvider, { target: up.url, name: 'orders', retry: { minDelay: 1, maxDelay: 1 } });
    await (await fetch(`${gateway.url}/x`)).text();
    await gateway.served();
    const clients = clientSpans(t.exporter).filter((span) => span.attributes['server.port'] === up.port);
    expect(clients.map((span) => span.instrumentationScope.name)).toStrictEqual(['@opentelemetry/instrumentation-undici', '@opentelemetry/instrumentation-undici']);
    expect(up.requests.map((r) => r.headers.traceparent)).toStrictEqual(clients.map((span) => `00-${span.spanContext().traceId}-${span.spanContext().spanId}-01`));
    const found = await collect(t.reader);
    expect(found.has('http.client.request.duration')).toBe(false);
    expect(found.get('resilient_proxy.retries')).toStrictEqual([{ attributes: { 'resilient_proxy.upstream': 'orders', 'resilient_proxy.host': up.url, 'resilient_proxy.failure.code': 'UPSTREAM_STATUS' }, value: 1 }]);
    const undiciDurations = (await collect(t.reader, '@opentelemetry/instrumentation-undici')).get('http.client.request.duration') ?? [];
    expect(undiciDurations.filter((point) => point.attributes['server.port'] === up.port).reduce((sum, point) => sum + point.value, 0)).toBe(2);
  });
});

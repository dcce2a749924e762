// Express gateway with Prometheus metrics: the OpenTelemetry instrumentation
// (`resilient-proxy/otel`) and OpenTelemetry's Prometheus exporter, whose
// handler serves /metrics on the app itself (no second port).
// Run: npx tsx examples/prometheus.ts
//   then: curl -i localhost:3000/api/orders/7 && curl localhost:3000/metrics

import { createServer } from 'node:http';
import { pathToFileURL } from 'node:url';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import express, { type Express } from 'express';
import { createProxy, type ProxyOptions } from 'resilient-proxy';
import { METRICS, ResilientProxyInstrumentation } from 'resilient-proxy/otel';
import { gatewayPort, listening, ready, startOrdersService } from './support.js';

export interface Gateway {
  readonly app: Express;
  close(): Promise<void>;
}

/** The gateway: /api proxied to the orders service, /metrics for Prometheus. `options` override the proxy's. */
export function createGateway(ordersUrl: string, options: Partial<ProxyOptions> = {}): Gateway {
  // The exporter is a metric reader: Prometheus's scrape is its collection.
  const exporter = new PrometheusExporter({ preventServerStart: true });
  // This exporter does not append units to names, and Prometheus wants them
  // there (`_seconds`): the view renames the duration histogram for this
  // reader only, so OTLP exporters keep the semantic-convention name.
  const meterProvider = new MeterProvider({
    readers: [exporter],
    views: [{ instrumentName: METRICS.clientDuration, name: `${METRICS.clientDuration}.seconds` }],
  });
  // Traces too, if you pass a tracerProvider (or set a global one).
  const unregister = registerInstrumentations({ meterProvider, instrumentations: [new ResilientProxyInstrumentation()] });

  const proxy = createProxy({ target: ordersUrl, name: 'orders', timeout: { connect: 1_000, response: 5_000 }, ...options });
  const app = express();
  app.get('/metrics', (req, res) => {
    exporter.getMetricsRequestHandler(req, res);
  });
  app.use('/api', proxy);
  return {
    app,
    close: async () => {
      unregister();
      await proxy.close();
      await meterProvider.shutdown();
    },
  };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const orders = await startOrdersService();
  const gateway = createGateway(orders.url);
  const server = await listening(createServer(gateway.app), gatewayPort);
  await ready(
    server.url,
    async () => {
      await server.close();
      await gateway.close();
      await orders.close();
    },
    async () => {
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      const line = metrics.split('\n').find((l) => l.startsWith('resilient_proxy_exchanges_total{'));
      console.log(`GET /metrics → ${line ?? '(no resilient_proxy_exchanges_total)'}`);
      return line !== undefined && line.includes('resilient_proxy_outcome="delivered"') && line.endsWith(' 1');
    },
  );
}

// `npx tsx bench/otel-cost.ts`: what observability costs per request.
// resilient-proxy gateways on bare node:http, each in its own process, side by
// side against one upstream process (1 KiB responses), all importing the
// package from the build in dist/ (as users get it):
//
//   (a) no subscriber: the diagnostics_channel publish sites cost one
//       `hasSubscribers` read each;
//   (b) a no-op subscriber on every channel: every message is built and published;
//   (c) ResilientProxyInstrumentation with traces and metrics, the W3C
//       propagator and the AsyncLocalStorage context manager; spans are
//       recorded (always sampled) and handed to an exporter that drops them,
//       metrics aggregated and never read;
//   (d) ResilientProxyInstrumentation, metrics only, with OpenTelemetry's
//       Prometheus exporter, scraped once a second, as examples/prometheus.ts;
//   (0) with `--baseline <git ref>`: the package built from that commit (say
//       the one before diagnostics channels existed), against which (a) shows
//       what the publish sites cost when nobody listens. The ref is exported
//       with `git archive` into a temporary folder and built there with tsup;
//       the work tree is not touched.
//
// Interleaved rounds of autocannon, 50 keep-alive connections; medians reported.
//
//   npx tsx bench/otel-cost.ts                       5 rounds of 4 s
//   npx tsx bench/otel-cost.ts --baseline 881d500    the same, with (0); writes bench/results/otel-cost.json
//   npx tsx bench/otel-cost.ts --smoke               1 round of 1 s, to prove it works

import { execFileSync } from 'node:child_process';
import { subscribe } from 'node:diagnostics_channel';
import { once } from 'node:events';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { createServer, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import autocannon from 'autocannon';
import { median, startServer } from './forked.js';
import { startRun, writeRecord } from './record.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const childEnv = { ...process.env, TSX_TSCONFIG_PATH: join(root, 'bench/tsconfig.runtime.json') };
const [, , role, mode, upstreamUrl, modulePath] = process.argv;

interface ProxyModule {
  createProxy(options: Record<string, unknown>): RequestListener;
  UpstreamRegistry: new () => unknown;
  DIAGNOSTICS_CHANNELS?: Record<string, string>;
}

async function gatewayListener(): Promise<RequestListener> {
  const proxyModule = (await import(modulePath ?? 'resilient-proxy')) as ProxyModule;
  const registry = new proxyModule.UpstreamRegistry();
  const proxy = proxyModule.createProxy({ target: upstreamUrl ?? '', name: 'bench', registry });
  if (mode === 'noop-subscribers') {
    for (const name of Object.values(proxyModule.DIAGNOSTICS_CHANNELS ?? {})) subscribe(name, () => undefined);
    return proxy;
  }
  if (mode === 'otel-noop' || mode === 'otel-prometheus') {
    const { context, propagation } = await import('@opentelemetry/api');
    const { registerInstrumentations } = await import('@opentelemetry/instrumentation');
    const { MeterProvider, MetricReader } = await import('@opentelemetry/sdk-metrics');
    const { ResilientProxyInstrumentation } = await import('resilient-proxy/otel');
    const instrumentation = new ResilientProxyInstrumentation({ registries: [registry as never] });
    if (mode === 'otel-noop') {
      const { AsyncLocalStorageContextManager } = await import('@opentelemetry/context-async-hooks');
      const { W3CTraceContextPropagator } = await import('@opentelemetry/core');
      const { BasicTracerProvider, SimpleSpanProcessor } = await import('@opentelemetry/sdk-trace-base');
      context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
      propagation.setGlobalPropagator(new W3CTraceContextPropagator());
      const dropping = { export: (_spans: unknown[], done: (result: { code: number }) => void) => done({ code: 0 }), shutdown: () => Promise.resolve() };
      class NeverRead extends MetricReader {
        protected override onForceFlush(): Promise<void> {
          return Promise.resolve();
        }
        protected override onShutdown(): Promise<void> {
          return Promise.resolve();
        }
      }
      registerInstrumentations({
        tracerProvider: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(dropping)] }),
        meterProvider: new MeterProvider({ readers: [new NeverRead()] }),
        instrumentations: [instrumentation],
      });
      return proxy;
    }
    const { PrometheusExporter } = await import('@opentelemetry/exporter-prometheus');
    const exporter = new PrometheusExporter({ preventServerStart: true });
    registerInstrumentations({ meterProvider: new MeterProvider({ readers: [exporter] }), instrumentations: [instrumentation] });
    return (req, res) => {
      if (req.url === '/metrics') exporter.getMetricsRequestHandler(req, res);
      else proxy(req, res);
    };
  }
  return proxy;
}

async function serve(): Promise<void> {
  const server = createServer(
    mode === 'upstream'
      ? (_req, res) => {
          const body = Buffer.alloc(1024, 'k');
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
          res.end(body);
        }
      : await gatewayListener(),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  process.send?.((server.address() as AddressInfo).port);
}

function start(kind: string, target = '', module = ''): ReturnType<typeof startServer> {
  return startServer(import.meta.url, ['serve', kind, target, ...(module === '' ? [] : [module])], 'http', { env: childEnv });
}

/** Builds the package at `ref` in a temporary folder; returns the folder and its dist/index.js. */
function buildBaseline(ref: string): { dir: string; entry: string } {
  const dir = mkdtempSync(join(tmpdir(), 'resilient-proxy-baseline-'));
  const archive = execFileSync('git', ['archive', '--format=tar', ref], { cwd: root, maxBuffer: 256 * 1024 * 1024 });
  execFileSync('tar', ['-x', '-C', dir], { input: archive });
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  execFileSync(process.execPath, [join(root, 'node_modules/tsup/dist/cli-default.js')], { cwd: dir, stdio: 'ignore' });
  return { dir, entry: pathToFileURL(join(dir, 'dist/index.js')).href };
}

async function main(): Promise<void> {
  const smoke = process.argv.includes('--smoke');
  const refAt = process.argv.indexOf('--baseline');
  const ref = refAt === -1 ? null : process.argv[refAt + 1];
  if (ref === undefined) throw new Error('--baseline needs a git ref');
  const rounds = smoke ? 1 : 5;
  const seconds = smoke ? 1 : 4;
  const recording = startRun();
  const baseline = ref === null ? null : buildBaseline(ref);
  const upstream = await start('upstream');
  const contenders = [
    ...(baseline === null ? [] : [{ name: `(0) baseline: ${ref ?? ''}, no diagnostics channels`, ...(await start('baseline', upstream.url, baseline.entry)) }]),
    { name: '(a) no subscriber', ...(await start('none', upstream.url)) },
    { name: '(b) a no-op subscriber on every channel', ...(await start('noop-subscribers', upstream.url)) },
    { name: '(c) instrumentation: traces + metrics, no-op exporters', ...(await start('otel-noop', upstream.url)) },
    { name: '(d) instrumentation: metrics, Prometheus exporter scraped every 1 s', ...(await start('otel-prometheus', upstream.url)) },
  ].map((contender) => ({ ...contender, rps: [] as number[], p99: [] as number[] }));
  const prometheus = contenders.at(-1);
  const scraper = setInterval(() => {
    if (prometheus !== undefined) void fetch(`${prometheus.url}/metrics`).then((response) => response.text()).catch(() => undefined);
  }, 1000);
  for (const contender of contenders) await autocannon({ url: `${contender.url}/1k`, connections: 50, duration: 1 });
  for (let round = 0; round < rounds; round += 1) {
    // Interleaved: each round starts one contender later, so drift hits all alike.
    const order = contenders.map((_, i) => contenders[(i + round) % contenders.length]).filter((c) => c !== undefined);
    for (const contender of order) {
      const result = await autocannon({ url: `${contender.url}/1k`, connections: 50, duration: seconds });
      contender.rps.push(result.requests.average);
      contender.p99.push(result.latency.p99);
    }
  }
  clearInterval(scraper);
  for (const { child } of [upstream, ...contenders]) child.kill();
  if (baseline !== null) rmSync(baseline.dir, { recursive: true, force: true });
  writeRecord('otel-cost', smoke, {
    run: recording.finish(),
    baseline: ref,
    rounds,
    seconds,
    connections: 50,
    rows: contenders.map((c) => ({ name: c.name, rps: Math.round(median(c.rps)), p99: median(c.p99) })),
  });
  const base = median(contenders.find((c) => c.name.startsWith('(a)'))?.rps ?? []);
  const zero = contenders.find((c) => c.name.startsWith('(0)'));
  console.log(
    `observability cost: 1 KiB responses, bare node:http, 50 connections, ${rounds} interleaved rounds of ${seconds} s, medians, Node ${process.version}${smoke ? ' (smoke run: figures mean nothing)' : ''}`,
  );
  console.log(`| gateway | req/s | p99 ms | vs (a) |${zero === undefined ? '' : ' (a) vs (0) |'}`);
  console.log(`|---|---|---|---|${zero === undefined ? '' : '---|'}`);
  for (const contender of contenders) {
    const vsZero = zero === undefined ? '' : contender.name.startsWith('(a)') ? ` ${(base / median(zero.rps)).toFixed(3)} |` : ' |';
    console.log(`| ${contender.name} | ${Math.round(median(contender.rps))} | ${median(contender.p99)} | ${(median(contender.rps) / base).toFixed(2)} |${vsZero}`);
  }
}

if (role === 'serve') await serve();
else await main();

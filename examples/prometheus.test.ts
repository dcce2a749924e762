// The Prometheus example under an outage: the orders service answers, then
// goes away (connections refused) until the circuit opens, then the proxy
// refuses. A scrape of /metrics must say exactly that.
// Run: npx vitest run examples/prometheus.test.ts

import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { faults, startFaultUpstream } from 'resilient-proxy/testing';
import { createGateway } from './prometheus.js';

const opened: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of opened.splice(0).reverse()) await close();
});

interface Series {
  readonly labels: Record<string, string>;
  readonly value: number;
}

/** The series of `name` in a Prometheus text exposition, without the scope labels every series carries. */
function series(exposition: string, name: string): Series[] {
  const found: Series[] = [];
  for (const line of exposition.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match?.[1] !== name) continue;
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      if (key !== undefined && !key.startsWith('otel_scope_')) labels[key] = value ?? '';
    }
    found.push({ labels, value: Number(match[3]) });
  }
  return found.sort((a, b) => JSON.stringify(a.labels).localeCompare(JSON.stringify(b.labels)));
}

describe('examples/prometheus.ts', () => {
  it('an outage, scraped: attempts, retries, refusals, exchange outcomes, the breaker gauge and the client duration, exact', async () => {
    // Each answer closes its connection, so the pool holds none when the service goes away.
    const orders = await startFaultUpstream({ fallback: faults.respond(200, '{"id":7}', { 'content-type': 'application/json', connection: 'close' }) });
    let ordersOpen = true;
    opened.push(async () => {
      if (ordersOpen) await orders.close();
    });
    const gateway = createGateway(orders.url, { retry: { minDelay: 1, maxDelay: 1 }, breaker: { volumeThreshold: 3 } });
    opened.push(() => gateway.close());
    const server = createServer(gateway.app).listen(0, '127.0.0.1');
    await once(server, 'listening');
    opened.push(async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const codeOf = async (path: string): Promise<string | number> => {
      const response = await fetch(`${url}${path}`);
      return response.status === 200 ? (await response.text(), 200) : ((await response.json()) as { code: string }).code;
    };

    expect(await codeOf('/api/orders/1')).toBe(200);
    // The outage: the port is closed, connections are refused. Each request
    // counts once in the breaker: two failed of three requests open it. Retry
    // throttling (a bucket of 10, no retry at half) lets the first make three
    // attempts and the second two.
    await orders.close();
    ordersOpen = false;
    expect(await codeOf('/api/orders/2')).toBe('UPSTREAM_CONNECT_REFUSED');
    expect(await codeOf('/api/orders/3')).toBe('UPSTREAM_CONNECT_REFUSED');
    // Then the proxy refuses at once, without calling.
    expect(await codeOf('/api/orders/4')).toBe('CIRCUIT_OPEN');
    expect(await codeOf('/api/orders/5')).toBe('CIRCUIT_OPEN');

    const scrape = await fetch(`${url}/metrics`);
    expect(scrape.status).toBe(200);
    expect(scrape.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await scrape.text();
    const upstream = { resilient_proxy_upstream: 'orders' };

    expect(series(text, 'resilient_proxy_exchanges_total')).toStrictEqual([
      { labels: { ...upstream, resilient_proxy_outcome: 'contract', resilient_proxy_failure_code: 'CIRCUIT_OPEN' }, value: 2 },
      { labels: { ...upstream, resilient_proxy_outcome: 'contract', resilient_proxy_failure_code: 'UPSTREAM_CONNECT_REFUSED' }, value: 2 },
      { labels: { ...upstream, resilient_proxy_outcome: 'delivered' }, value: 1 },
    ]);
    const host = { ...upstream, resilient_proxy_host: orders.url };
    expect(series(text, 'resilient_proxy_attempts_total')).toStrictEqual([
      { labels: { ...host, resilient_proxy_attempt_outcome: 'delivered' }, value: 1 },
      { labels: { ...host, resilient_proxy_attempt_outcome: 'failed', resilient_proxy_failure_code: 'UPSTREAM_CONNECT_REFUSED' }, value: 5 },
    ]);
    expect(series(text, 'resilient_proxy_retries_total')).toStrictEqual([{ labels: { ...host, resilient_proxy_failure_code: 'UPSTREAM_CONNECT_REFUSED' }, value: 3 }]);
    expect(series(text, 'resilient_proxy_hosts')).toStrictEqual([
      { labels: { ...upstream, resilient_proxy_host_state: 'ejected' }, value: 0 },
      { labels: { ...upstream, resilient_proxy_host_state: 'failing' }, value: 0 },
      { labels: { ...upstream, resilient_proxy_host_state: 'healthy' }, value: 1 },
      { labels: { ...upstream, resilient_proxy_host_state: 'unhealthy' }, value: 0 },
    ]);
    expect(series(text, 'resilient_proxy_group_panic')).toStrictEqual([{ labels: upstream, value: 0 }]);
    expect(series(text, 'resilient_proxy_requests_refused_total')).toStrictEqual([{ labels: { ...upstream, resilient_proxy_refusal_reason: 'circuit_open' }, value: 2 }]);
    expect(series(text, 'resilient_proxy_breaker_state')).toStrictEqual([{ labels: upstream, value: 2 }]);
    expect(series(text, 'resilient_proxy_hosts_ejected')).toStrictEqual([{ labels: upstream, value: 0 }]);
    expect(series(text, 'resilient_proxy_retry_budget_exhausted_total')).toStrictEqual([{ labels: { ...upstream, resilient_proxy_failure_code: 'UPSTREAM_CONNECT_REFUSED' }, value: 1 }]);
    const server_ = { http_request_method: 'GET', server_address: '127.0.0.1', server_port: String(orders.port), url_scheme: 'http', ...upstream };
    expect(series(text, 'http_client_request_duration_seconds_count')).toStrictEqual([
      { labels: { ...server_, error_type: 'UPSTREAM_CONNECT_REFUSED' }, value: 5 },
      { labels: { ...server_, http_response_status_code: '200' }, value: 1 },
    ]);
    expect(text).toContain('# TYPE http_client_request_duration_seconds histogram');
    // Prometheus names carry their unit: no series without the `_seconds` suffix.
    expect(series(text, 'http_client_request_duration_count')).toStrictEqual([]);
    expect(text).toContain('# TYPE resilient_proxy_retries_total counter');
    expect(text).toContain('# TYPE resilient_proxy_breaker_state gauge');
  });
});

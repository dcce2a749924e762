// Discovery: a group's hosts from DNS (a real dnsmasq of the test's own) and
// from any `discover` source. Records are added, changed and removed at run
// time, the DNS server is stopped and started again; hosts join and leave
// the group, traffic follows, nothing in flight is lost, and DNS trouble
// never empties the group.

import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createProxy, DIAGNOSTICS_CHANNELS, type DiscoveryEvent, type ProxyOptions } from '../src/index.js';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { startDnsmasq } from './engines.js';
import { listen, onCleanup, proxy, rawGet, testRegistry } from './support.js';

/** An upstream on `address` that answers with its address; a request to `/hold` waits for `release()`. */
async function replica(address: string, port = 0, holds = false): Promise<{ port: number; held: Promise<void>; release: () => void; seen: () => number }> {
  let count = 0;
  let release: () => void = () => undefined;
  let onHeld: () => void = () => undefined;
  const held = new Promise<void>((resolve) => {
    onHeld = resolve;
  });
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    count += 1;
    if (holds && req.url === '/hold') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write(`${address} `);
      release = () => res.end('done');
      onHeld();
      return;
    }
    res.end(address);
  });
  server.listen(port, address);
  await once(server, 'listening');
  onCleanup(async () => {
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  });
  return { port: (server.address() as AddressInfo).port, held, release: () => release(), seen: () => count };
}

interface Recorder {
  onDiscovery: (event: DiscoveryEvent) => void;
  /** The first event `matches` accepts after the previous one found (or after `skip()`), waiting for it if need be. */
  next: (matches: (event: DiscoveryEvent) => boolean) => Promise<DiscoveryEvent>;
  /** Events so far are not looked at again: what comes next follows an action. */
  skip: () => void;
}

function recorder(): Recorder {
  const events: DiscoveryEvent[] = [];
  const listeners = new Set<() => void>();
  let cursor = 0;
  return {
    onDiscovery: (event) => {
      events.push(event);
      for (const listener of [...listeners]) listener();
    },
    next: (matches) =>
      new Promise((resolve) => {
        const check = (): void => {
          const index = events.findIndex((event, n) => n >= cursor && matches(event));
          if (index === -1) return;
          listeners.delete(check);
          cursor = index + 1;
          resolve(events[index] as DiscoveryEvent);
        };
        listeners.add(check);
        check();
      }),
    skip: () => {
      cursor = events.length;
    },
  };
}

async function bodies(url: string, count: number): Promise<string[]> {
  const seen: string[] = [];
  for (let n = 0; n < count; n += 1) {
    const result = await rawGet(url);
    expect(result.status).toBe(200);
    seen.push(result.body.toString());
  }
  return seen;
}

const FAST = { refresh: { min: 20, max: 100 }, timeout: 500 } as const;

describe('target: { dns } against a real dnsmasq', () => {
  it('follows A records added, changed and removed at run time: hosts join and leave, a removed host finishes what it carries', async () => {
    const first = await replica('127.0.0.2', 0, true);
    await replica('127.0.0.3', first.port);
    const third = await replica('127.0.0.4', first.port);
    const dns = await startDnsmasq({ hosts: [['127.0.0.2', 'orders.test'], ['127.0.0.3', 'orders.test']] });
    const seen = recorder();
    const registry = testRegistry();
    const gateway = proxy({
      target: { dns: 'orders.test', port: first.port, servers: [dns.server], ...FAST },
      registry,
      balance: 'round-robin',
      slowStart: 0,
      hooks: { onDiscovery: seen.onDiscovery },
    });
    const { url } = await listen(gateway);
    await seen.next((event) => event.kind === 'updated' && event.hosts === 2);
    expect(new Set(await bodies(url, 4))).toStrictEqual(new Set(['127.0.0.2', '127.0.0.3']));

    // Added: the new host takes traffic.
    seen.skip();
    const added = seen.next((event) => event.kind === 'updated' && event.hosts === 3);
    await dns.reload([['127.0.0.2', 'orders.test'], ['127.0.0.3', 'orders.test'], ['127.0.0.4', 'orders.test']]);
    await added;
    expect(new Set(await bodies(url, 6))).toStrictEqual(new Set(['127.0.0.2', '127.0.0.3', '127.0.0.4']));

    // Removed while carrying a response: that response still ends whole.
    // Requests until one is held by the host about to leave (a promise in an object: returned bare, it would be awaited).
    const { inFlight } = await (async () => {
      for (;;) {
        const result = rawGet(`${url}/hold`);
        if ((await Promise.race([result, first.held.then(() => null)])) === null) return { inFlight: result };
      }
    })();
    const removed = seen.next((event) => event.kind === 'updated' && event.hosts === 2);
    await dns.reload([['127.0.0.3', 'orders.test'], ['127.0.0.4', 'orders.test']]);
    await removed;
    first.release();
    const carried = await inFlight;
    expect(carried.status).toBe(200);
    expect(carried.ending).toBe('complete');
    expect(carried.body.toString()).toBe('127.0.0.2 done');
    const before = first.seen();
    expect(new Set(await bodies(url, 6))).toStrictEqual(new Set(['127.0.0.3', '127.0.0.4']));
    expect(first.seen()).toBe(before);

    const [snapshot] = registry.snapshot();
    expect(snapshot?.hosts.map((host) => host.url)).toStrictEqual([`http://127.0.0.3:${first.port}`, `http://127.0.0.4:${first.port}`]);
    expect(snapshot?.discovery).toMatchObject({ source: `dns A orders.test:${first.port} via ${dns.server}`, failures: 0, lastError: null });
    expect(third.seen()).toBeGreaterThan(0);
  });

  it('keeps the last good hosts while the DNS server is down or answers NXDOMAIN, reports it, and recovers', async () => {
    const host = await replica('127.0.0.2');
    const dns = await startDnsmasq({ hosts: [['127.0.0.2', 'orders.test']] });
    const seen = recorder();
    const registry = testRegistry();
    const channelEvents: unknown[] = [];
    const onChannel = (message: unknown): void => {
      channelEvents.push(message);
    };
    subscribe(DIAGNOSTICS_CHANNELS.discovery, onChannel);
    onCleanup(() => unsubscribe(DIAGNOSTICS_CHANNELS.discovery, onChannel));
    const gateway = proxy({ target: { dns: 'orders.test', port: host.port, servers: [dns.server], ...FAST }, registry, hooks: { onDiscovery: seen.onDiscovery } });
    const { url } = await listen(gateway);
    await seen.next((event) => event.kind === 'updated');

    // Server down: every refresh fails, the host stays and serves.
    seen.skip();
    const failed = seen.next((event) => event.kind === 'failed');
    await dns.stop();
    const failure = await failed;
    expect(failure).toMatchObject({ upstream: `dns A orders.test:${host.port} via ${dns.server}`, hosts: 1 });
    expect(failure.error).toBeInstanceOf(Error);
    expect(await bodies(url, 2)).toStrictEqual(['127.0.0.2', '127.0.0.2']);
    const down = registry.snapshot()[0]?.discovery;
    expect(down?.failures).toBeGreaterThan(0);
    expect(down?.lastError?.message).toMatch(/orders\.test/);
    expect(channelEvents).toContainEqual(expect.objectContaining({ kind: 'failed', hosts: 1 }));

    // Back, but the name is gone (NXDOMAIN): still the last good host.
    seen.skip();
    const nxdomain = seen.next((event) => event.kind === 'failed' && (event.error as { code?: string }).code === 'ENOTFOUND');
    await dns.restart({ hosts: [] });
    await nxdomain;
    expect(await bodies(url, 2)).toStrictEqual(['127.0.0.2', '127.0.0.2']);

    // The name is back: refreshes recover.
    seen.skip();
    const recovered = seen.next((event) => event.kind === 'recovered');
    await dns.reload([['127.0.0.2', 'orders.test']]);
    await recovered;
    const after = registry.snapshot()[0]?.discovery;
    expect(after?.failures).toBe(0);
    expect(after?.lastRefresh).toBeGreaterThanOrEqual(down?.lastError?.at ?? Number.POSITIVE_INFINITY);
  });

  it('answers UPSTREAM_DNS_FAILED until the first answer (a cold start with DNS failing), then serves', async () => {
    const host = await replica('127.0.0.2');
    const dns = await startDnsmasq({ hosts: [] });
    const seen = recorder();
    const gateway = proxy({ target: { dns: 'orders.test', port: host.port, servers: [dns.server], ...FAST }, name: 'orders', hooks: { onDiscovery: seen.onDiscovery } });
    const { url } = await listen(gateway);
    await seen.next((event) => event.kind === 'failed');
    const cold = await rawGet(url, { 'x-request-id': 'req-1' });
    expect(cold.status).toBe(502);
    expect(cold.headers['content-type']).toBe('application/problem+json');
    expect(cold.headers['proxy-status']).toBe('resilient-proxy; error=dns_error');
    expect(JSON.parse(cold.body.toString())).toStrictEqual({
      type: 'about:blank',
      title: 'Bad Gateway',
      status: 502,
      detail: "The upstream service's host name could not be resolved.",
      code: 'UPSTREAM_DNS_FAILED',
      upstream: 'orders',
      attempts: 0,
      requestId: 'req-1',
    });
    const found = seen.next((event) => event.kind === 'updated');
    await dns.reload([['127.0.0.2', 'orders.test']]);
    await found;
    expect(await bodies(url, 1)).toStrictEqual(['127.0.0.2']);
  });

  it('bounds a query by target.timeout when the DNS server never answers', async () => {
    // A real UDP socket that reads queries and answers none: a DNS server hung or behind a dropping firewall.
    const silent = createSocket('udp4');
    silent.on('message', () => undefined);
    silent.bind(0, '127.0.0.1');
    await once(silent, 'listening');
    onCleanup(() => silent.close());
    const seen = recorder();
    const gateway = proxy({
      target: { dns: 'orders.test', port: 80, servers: [`127.0.0.1:${silent.address().port}`], refresh: { min: 60_000 }, timeout: 100 },
      hooks: { onDiscovery: seen.onDiscovery },
    });
    const failed = await seen.next((event) => event.kind === 'failed');
    expect((failed.error as { code?: string }).code).toBe('ETIMEOUT');
    const { url } = await listen(gateway);
    const cold = await rawGet(url);
    expect([cold.status, (JSON.parse(cold.body.toString()) as { code: string }).code]).toStrictEqual([502, 'UPSTREAM_DNS_FAILED']);
  });

  it('takes hosts, ports and weights from SRV records of the lowest priority, and follows a changed record', async () => {
    const a = await replica('127.0.0.1');
    const b = await replica('127.0.0.1');
    const backup = await replica('127.0.0.1');
    const dns = await startDnsmasq({
      hosts: [['127.0.0.1', 'node.test']],
      srv: [
        ['_http._tcp.orders.test', 'node.test', a.port, 0, 30],
        ['_http._tcp.orders.test', 'node.test', b.port, 0, 10],
        ['_http._tcp.orders.test', 'node.test', backup.port, 1, 10],
      ],
    });
    const seen = recorder();
    const registry = testRegistry();
    const gateway = proxy({ target: { dns: '_http._tcp.orders.test', type: 'SRV', servers: [dns.server], ...FAST }, registry, hooks: { onDiscovery: seen.onDiscovery } });
    await listen(gateway);
    await seen.next((event) => event.kind === 'updated');
    const hosts = (): { url: string; weight: number }[] => (registry.snapshot()[0]?.hosts ?? []).map(({ url, weight }) => ({ url, weight }));
    expect(hosts().sort((x, y) => y.weight - x.weight)).toStrictEqual([
      { url: `http://127.0.0.1:${a.port}`, weight: 30 },
      { url: `http://127.0.0.1:${b.port}`, weight: 10 },
    ]);
    seen.skip();
    const changed = seen.next((event) => event.kind === 'updated');
    await dns.restart({ hosts: [['127.0.0.1', 'node.test']], srv: [['_http._tcp.orders.test', 'node.test', backup.port, 0, 5]] });
    await changed;
    expect(hosts()).toStrictEqual([{ url: `http://127.0.0.1:${backup.port}`, weight: 5 }]);
  });
});

describe('target: { discover }', () => {
  it('feeds each list through setTargets; a throw, an empty or a foreign list keeps the last good hosts and is reported', async () => {
    const one = await replica('127.0.0.1');
    const two = await replica('127.0.0.1');
    const seen = recorder();
    let calls = 0;
    const lists: (string[] | Error)[] = [[`http://127.0.0.1:${one.port}/api`], [], [`https://127.0.0.1:${two.port}/api`], new Error('registry down'), [`http://127.0.0.1:${two.port}/api`]];
    const registry = testRegistry();
    const gateway = proxy({
      name: 'orders',
      registry,
      target: {
        protocol: 'http:',
        path: '/api',
        backoff: { min: 5, max: 10 },
        async *discover() {
          calls += 1;
          for (;;) {
            const next = lists.shift();
            if (next === undefined) return;
            if (next instanceof Error) throw next;
            // A registry answers asynchronously.
            yield await Promise.resolve(next);
          }
        },
      },
      hooks: { onDiscovery: seen.onDiscovery },
    });
    const { url } = await listen(gateway);
    await seen.next((event) => event.kind === 'updated' && event.hosts === 1);
    const failures = [
      await seen.next((event) => event.kind === 'failed'),
      await seen.next((event) => event.kind === 'failed' && event.error instanceof TypeError),
      await seen.next((event) => event.kind === 'failed' && (event.error as Error).message === 'registry down'),
    ];
    expect(failures.map((event) => event.hosts)).toStrictEqual([1, 1, 1]);
    await seen.next((event) => event.kind === 'updated');
    expect(calls).toBe(2);
    expect(registry.snapshot()[0]?.hosts.map((host) => host.url)).toStrictEqual([`http://127.0.0.1:${two.port}/api`]);
    const result = await rawGet(`${url}/x`);
    expect(result.body.toString()).toBe('127.0.0.1');
    expect(two.seen()).toBe(1);
    expect(() => gateway.setTargets(`http://127.0.0.1:${one.port}/api`)).toThrow(new TypeError('Expected no `setTargets` call on a proxy whose hosts come from discover: the next refresh would undo it.'));
  });

  it('aborts the source when the last proxy closes', async () => {
    let aborted: AbortSignal | null = null;
    const gateway = createProxy({
      name: 'orders',
      registry: testRegistry(),
      target: {
        async *discover(signal: AbortSignal) {
          aborted = signal;
          yield ['http://127.0.0.1:1'];
          await once(signal, 'abort');
        },
      },
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(aborted).not.toBeNull();
    const signal = aborted as unknown as AbortSignal;
    expect(signal.aborted).toBe(false);
    await gateway.close();
    expect(signal.aborted).toBe(true);
  });
});

describe('discovered target options', () => {
  const invalid: [string, ProxyOptions['target'], string | undefined, string][] = [
    ['a DNS name', { dns: 'bad name' }, undefined, 'Expected `target.dns` to be a DNS name such as "orders.internal", got the string "bad name".'],
    ['a record type', { dns: 'orders.test', type: 'MX' as 'A', port: 80 }, undefined, "Expected `target.type` to be 'A', 'AAAA' or 'SRV', got the string \"MX\"."],
    ['a port for A', { dns: 'orders.test' }, undefined, 'Expected `target.port` to be a port number from 1 to 65535 (required for A and AAAA records), got NaN.'],
    ['no port for SRV', { dns: '_http._tcp.orders.test', type: 'SRV', port: 80 }, undefined, 'Expected `target.port` to be absent for SRV records (each record carries its port), got 80.'],
    ['servers', { dns: 'orders.test', port: 80, servers: ['not a server'] }, undefined, 'Expected `target.servers` to be a non-empty list of DNS server addresses like "127.0.0.1:5353" or "[::1]:53", got an array.'],
    ['refresh bounds', { dns: 'orders.test', port: 80, refresh: { min: 500, max: 100 } }, undefined, 'Expected `target.refresh.max` to be at least `target.refresh.min` (500), got 100.'],
    ['a protocol', { dns: 'orders.test', port: 80, protocol: 'ftp:' as 'http:' }, undefined, "Expected `target.protocol` to be 'http:' or 'https:', got the string \"ftp:\"."],
    ['a known key', { dns: 'orders.test', port: 80, ttl: 5 } as ProxyOptions['target'], undefined, 'Unknown option `target.ttl`. Known options: dns, type, port, protocol, path, servers, refresh, timeout.'],
    ['a discover function', { discover: 'consul' as unknown as () => AsyncIterable<string[]> }, 'orders', 'Expected `target.discover` to be a function returning an async iterable of host lists, got the string "consul".'],
    ['a name with discover', { discover: () => (async function* empty() {})() }, undefined, 'Expected `name` to be set with `target.discover` (it keys the shared breaker, budget and hosts), got undefined.'],
  ];
  it.each(invalid)('checks %s', (_what, target, name, message) => {
    expect(() => createProxy({ target, ...(name === undefined ? {} : { name }), registry: testRegistry() })).toThrow(new TypeError(message));
  });
});

// The stale store on Redis (resilient-proxy/redis) against a real
// redis-server of the test's own: two proxies with registries and clients of
// their own share what one kept; Redis killed, frozen or back never holds a
// request up or crashes anything, and its state is reported.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { DIAGNOSTICS_CHANNELS } from '../src/index.js';
import { RedisStaleStore, type StaleStoreStateChange } from '../src/redis.js';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { startRedis, type RedisServer } from './engines.js';
import { listen, onCleanup, proxy, rawGet } from './support.js';

function client(server: RedisServer): Redis {
  const created = new Redis({ host: '127.0.0.1', port: server.port, enableOfflineQueue: false, maxRetriesPerRequest: 1, retryStrategy: () => 20 });
  onCleanup(() => created.disconnect());
  return created;
}

/** Resolves on the client's next 'ready' ('error' events on the way are the store's to report: events.once would reject on them). */
function nextReady(redis: Redis): Promise<void> {
  return new Promise((resolve) => redis.once('ready', () => resolve()));
}

async function ready(redis: Redis): Promise<void> {
  if (redis.status !== 'ready') await nextReady(redis);
}

function store(redis: Redis, options: Partial<ConstructorParameters<typeof RedisStaleStore>[0]> = {}): RedisStaleStore {
  const created = new RedisStaleStore({ client: redis, ...options });
  onCleanup(() => created.close());
  return created;
}

/** An upstream that answers `body` with a minute of freshness; `close()` makes it refuse connections. */
async function origin(body: string): Promise<{ url: string; close: () => Promise<void> }> {
  const server: Server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' });
    res.end(body);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const close = async (): Promise<void> => {
    if (!server.listening) return;
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  };
  onCleanup(close);
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close };
}

/** Every write sent on `redis` before this has been answered: one connection answers in order. */
async function flushed(redis: Redis): Promise<void> {
  await redis.ping();
}

const HOST = { host: 'gateway.test' };

/** test/fixtures/redis-gateway.ts in a process of its own; resolves with its URL. */
async function gatewayProcess(redis: RedisServer, target: string): Promise<string> {
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('fixtures/redis-gateway.ts', import.meta.url).pathname], {
    env: { ...process.env, REDIS_PORT: String(redis.port), TARGET: target },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  onCleanup(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  });
  const [line] = (await once(child.stdout, 'data')) as [Buffer];
  return line.toString().trim();
}

describe('RedisStaleStore against a real redis-server', () => {
  it('lets a cold proxy with its own registry serve stale what another proxy kept, when the upstream dies', async () => {
    const redis = await startRedis();
    const up = await origin('kept by A');
    const [clientA, clientB] = [client(redis), client(redis)];
    await Promise.all([ready(clientA), ready(clientB)]);
    const a = await listen(proxy({ target: up.url, name: 'orders', retry: false, staleIfError: { store: store(clientA) } }));
    const storeB = store(clientB);
    const b = await listen(proxy({ target: up.url, name: 'orders', retry: false, staleIfError: { store: storeB } }));

    const fresh = await rawGet(`${a.url}/items`, HOST);
    expect([fresh.status, fresh.body.toString()]).toStrictEqual([200, 'kept by A']);
    await flushed(clientA);
    await up.close();

    const stale = await rawGet(`${b.url}/items`, HOST);
    expect(stale.status).toBe(200);
    expect(stale.body.toString()).toBe('kept by A');
    expect(stale.headers['cache-status']).toBe('resilient-proxy; fwd=stale; detail=UPSTREAM_CONNECT_REFUSED');
    expect(stale.headers['content-type']).toBe('text/plain');
    expect(storeB.status()).toMatchObject({ state: 'ready', hits: 1, misses: 0, errors: 0 });
  });

  it('lets another gateway process serve stale what this one kept, when the upstream dies', async () => {
    const redis = await startRedis();
    const up = await origin('kept by process A');
    const redisClient = client(redis);
    await ready(redisClient);
    const a = await listen(proxy({ target: up.url, name: 'orders', retry: false, staleIfError: { store: store(redisClient) } }));
    const b = await gatewayProcess(redis, up.url);
    expect((await rawGet(`${a.url}/items`, HOST)).body.toString()).toBe('kept by process A');
    await flushed(redisClient);
    await up.close();
    const stale = await rawGet(`${b}/items`, HOST);
    expect([stale.status, stale.body.toString(), stale.headers['cache-status']]).toStrictEqual([200, 'kept by process A', 'resilient-proxy; fwd=stale; detail=UPSTREAM_CONNECT_REFUSED']);
  });

  it('expires an entry with its stale window (Redis PX), and keeps no entry over maxEntryBytes', async () => {
    const redis = await startRedis();
    const up = await origin('x'.repeat(2000));
    const redisClient = client(redis);
    await ready(redisClient);
    const small = store(redisClient, { prefix: 'small:', maxEntryBytes: 1000 });
    const kept = store(redisClient, { prefix: 'kept:' });
    const viaKept = await listen(proxy({ target: up.url, name: 'orders', staleIfError: { store: kept, maxStale: 5000 } }));
    const viaSmall = await listen(proxy({ target: up.url, name: 'orders', staleIfError: { store: small } }));
    await rawGet(`${viaKept.url}/items`, HOST);
    await rawGet(`${viaSmall.url}/items`, HOST);
    await flushed(redisClient);

    const keys = await redisClient.keys('kept:*');
    expect(keys).toHaveLength(1);
    // max-age=60 plus maxStale 5 s: 65 s at most, and most of it left.
    const ttl = await redisClient.pttl(keys[0] as string);
    expect(ttl).toBeGreaterThan(60_000);
    expect(ttl).toBeLessThanOrEqual(65_000);
    expect(await redisClient.keys('small:*')).toStrictEqual([]);
    expect(small.status()).toMatchObject({ tooLarge: 1, writes: 0 });
  });

  it('bounds a lookup while Redis is frozen (a miss, then the contract) and drops writes past maxPendingWrites', async () => {
    const redis = await startRedis();
    const up = await origin('v1');
    const redisClient = client(redis);
    await ready(redisClient);
    const slow = store(redisClient, { timeout: 50, maxPendingWrites: 2 });
    const gateway = await listen(proxy({ target: up.url, name: 'orders', retry: false, staleIfError: { store: slow } }));
    redis.pause();
    onCleanup(() => redis.resume());
    for (let n = 0; n < 4; n += 1) expect((await rawGet(`${gateway.url}/items/${n}`, HOST)).status).toBe(200);
    expect(slow.status()).toMatchObject({ writes: 2, dropped: 2, pendingWrites: 2 });
    await up.close();
    const failed = await rawGet(`${gateway.url}/items/0`, HOST);
    expect(failed.status).toBe(502);
    expect(JSON.parse(failed.body.toString())).toMatchObject({ code: 'UPSTREAM_CONNECT_REFUSED' });
    expect(slow.status()).toMatchObject({ timeouts: 1, misses: 1, hits: 0 });
    redis.resume();
    await flushed(redisClient);
    expect(slow.status().pendingWrites).toBe(0);
  });

  it('survives Redis killed mid-run: requests served or failed properly, state reported, shared again after a restart', async () => {
    const redis = await startRedis();
    const up = await origin('v1');
    const redisClient = client(redis);
    await ready(redisClient);
    const changes: StaleStoreStateChange[] = [];
    const published: unknown[] = [];
    const onPublish = (message: unknown): void => {
      published.push(message);
    };
    subscribe(DIAGNOSTICS_CHANNELS.staleStore, onPublish);
    onCleanup(() => unsubscribe(DIAGNOSTICS_CHANNELS.staleStore, onPublish));
    const shared = store(redisClient, { onStateChange: (change) => changes.push(change) });
    const gateway = await listen(proxy({ target: up.url, name: 'orders', retry: false, staleIfError: { store: shared } }));

    const down = new Promise((resolve) => redisClient.once('close', resolve));
    await redis.kill();
    await down;
    expect(shared.status().state).toBe('unavailable');
    expect(changes.map((change) => change.state)).toStrictEqual(['unavailable']);
    expect(published).toContainEqual(expect.objectContaining({ prefix: 'resilient-proxy:stale:', state: 'unavailable' }));
    // The upstream still serves; the write is dropped at once.
    const served = await rawGet(`${gateway.url}/items`, HOST);
    expect([served.status, served.body.toString()]).toStrictEqual([200, 'v1']);
    expect(shared.status()).toMatchObject({ dropped: 1, pendingWrites: 0 });

    const back = nextReady(redisClient);
    await redis.restart();
    await back;
    expect(shared.status().state).toBe('ready');
    expect(changes.map((change) => change.state)).toStrictEqual(['unavailable', 'ready']);
    await rawGet(`${gateway.url}/items`, HOST);
    await flushed(redisClient);
    await up.close();
    const stale = await rawGet(`${gateway.url}/items`, HOST);
    expect([stale.status, stale.body.toString(), stale.headers['cache-status']]).toStrictEqual([200, 'v1', 'resilient-proxy; fwd=stale; detail=UPSTREAM_CONNECT_REFUSED']);
  });

  it('checks its options', () => {
    expect(() => new RedisStaleStore({ client: JSON.parse('{}') as Redis })).toThrow(
      new TypeError('Expected `client` to be an ioredis client (new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 1 })).'),
    );
    const lazy = new Redis({ lazyConnect: true });
    expect(() => new RedisStaleStore({ client: lazy, timeout: 0 })).toThrow(new TypeError('Expected `timeout` to be a whole number from 1 to 10000, got 0.'));
    expect(() => new RedisStaleStore({ client: lazy, maxPendingWrites: 1.5 })).toThrow(new TypeError('Expected `maxPendingWrites` to be a whole number from 1 to 1000000, got 1.5.'));
    lazy.disconnect();
  });
});

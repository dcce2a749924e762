// Shared test plumbing: every server, proxy and dispatcher a test opens is
// registered here and closed after the test, so no test leaks a handle.

import { once } from 'node:events';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Express } from 'express';
import { afterEach } from 'vitest';
import { createProxy, UpstreamRegistry, type ProxyOptions, type ResilientProxy } from '../src/index.js';
import { startFaultUpstream, type FaultUpstream, type FaultUpstreamOptions } from '../src/testing/index.js';

const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  const pending = cleanups.splice(0).reverse();
  for (const cleanup of pending) await cleanup();
});

export function onCleanup(cleanup: () => unknown): void {
  cleanups.push(cleanup);
}

/** A registry of the test's own, closed after it. */
export function testRegistry(): UpstreamRegistry {
  const registry = new UpstreamRegistry();
  onCleanup(() => registry.close());
  return registry;
}

export async function upstream(options?: FaultUpstreamOptions): Promise<FaultUpstream> {
  const started = await startFaultUpstream(options);
  onCleanup(() => started.close());
  return started;
}

/** A proxy with a registry of its own, so retry budgets never leak between tests. */
export function proxy(options: ProxyOptions): ResilientProxy {
  const created = createProxy({ registry: testRegistry(), ...options });
  onCleanup(() => created.close());
  return created;
}

/** An Express app with the proxy mounted at `/api`. */
export function expressGateway(options: ProxyOptions, setup?: (app: Express) => void): Express {
  const app = express();
  setup?.(app);
  app.use('/api', proxy(options));
  return app;
}

export async function listen(listener: RequestListener | Express): Promise<{ server: Server; url: string; port: number }> {
  const server = createServer(listener as RequestListener);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  onCleanup(async () => {
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  });
  return { server, url: `http://127.0.0.1:${port}`, port };
}

export interface RawResult {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  /** `complete` when the body ended cleanly, `truncated` when the connection was cut. */
  readonly ending: 'complete' | 'truncated';
}

/** A plain node:http GET that reports whether the body ended cleanly or was cut off. */
export function rawGet(url: string, headers: Record<string, string> = {}): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    let finish: ((ending: RawResult['ending']) => void) | null = null;
    const req = httpRequest(url, { headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      let settled = false;
      finish = (ending) => {
        if (settled) return;
        settled = true;
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), ending });
      };
      res.once('end', () => finish?.(res.complete ? 'complete' : 'truncated'));
      res.once('aborted', () => finish?.('truncated'));
      res.once('error', () => finish?.('truncated'));
    });
    // After the response started, a connection error is a cut-off body (Node
    // 24 reports an RST mid-body here rather than on the response).
    req.once('error', (error) => {
      if (finish === null) reject(error);
      else finish('truncated');
    });
    req.end();
  });
}

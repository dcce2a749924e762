// Shared by the runnable examples: a stand-in upstream (an "orders" service on
// loopback) and the `--check` mode CI uses to boot an example, send one request
// through its gateway and exit.

import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Running {
  readonly url: string;
  close(): Promise<void>;
}

const checking = process.argv.includes('--check');

/** The port for the gateway: PORT or 3000, or any free port in `--check` mode. */
export const gatewayPort = checking ? 0 : Number(process.env.PORT ?? 3000);

/** An "orders" service: GET /orders/:id answers JSON; everything else 404. */
export async function startOrdersService(): Promise<Running> {
  const server = createServer((req, res) => {
    const match = /^\/orders\/(\d+)$/.exec(req.url ?? '');
    const body = JSON.stringify(match ? { id: Number(match[1]), status: 'shipped' } : { error: 'not found' });
    res.writeHead(match ? 200 : 404, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  return listening(server, 0);
}

/** Waits for `server` to listen (on `port` when given; else it was told to listen already). */
export async function listening(server: Server, port?: number): Promise<Running> {
  if (port !== undefined) server.listen(port, '127.0.0.1');
  if (!server.listening) await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

/**
 * Prints how to try the gateway; in `--check` mode sends GET /api/orders/7
 * through it instead, prints the answer, runs the example's own `verify` (if
 * any), closes everything and sets the exit code.
 */
export async function ready(gateway: string, close: () => Promise<unknown>, verify?: () => Promise<boolean>): Promise<void> {
  if (!checking) {
    console.log(`gateway on ${gateway}: try  curl -i ${gateway}/api/orders/7`);
    return;
  }
  const response = await fetch(`${gateway}/api/orders/7`);
  const body = await response.text();
  console.log(`GET /api/orders/7 → ${response.status} ${body}`);
  const verified = verify === undefined || (await verify());
  await close();
  process.exitCode = response.status === 200 && body === '{"id":7,"status":"shipped"}' && verified ? 0 : 1;
}

// Bare node:http gateway: the proxy is the request listener itself. Without a
// framework there is no mount point, so the whole path is forwarded; here the
// app strips its own /api prefix first.
// Run: npx tsx examples/node-http.ts   (then: curl -i localhost:3000/api/orders/7)

import { createServer } from 'node:http';
import { createProxy } from 'resilient-proxy';
import { gatewayPort, listening, ready, startOrdersService } from './support.js';

const orders = await startOrdersService();

const proxy = createProxy({ target: orders.url, name: 'orders' });
const server = createServer((req, res) => {
  if (!req.url?.startsWith('/api/')) {
    res.writeHead(404).end();
    return;
  }
  req.url = req.url.slice('/api'.length);
  proxy(req, res);
});

const gateway = await listening(server, gatewayPort);
await ready(gateway.url, async () => {
  await gateway.close();
  await proxy.close();
  await orders.close();
});

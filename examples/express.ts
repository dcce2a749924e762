// Express gateway: the proxy is an ordinary middleware, mounted under /api.
// Run: npx tsx examples/express.ts   (then: curl -i localhost:3000/api/orders/7)

import { createServer } from 'node:http';
import express from 'express';
import { createProxy, defaultRegistry } from 'resilient-proxy';
import { gatewayPort, listening, ready, startOrdersService } from './support.js';

const orders = await startOrdersService();

const app = express();
const proxy = createProxy({
  target: orders.url,
  name: 'orders',
  timeout: { connect: 1_000, response: 5_000 },
});
app.use('/api', proxy);
// The breaker state of every upstream, for your load balancer. The full
// snapshot names internal hosts: serve that only on an operators' port.
app.get('/health', (_req, res) => {
  const upstreams = defaultRegistry.snapshot().map(({ upstream, state }) => ({ upstream, state }));
  res.status(upstreams.some((u) => u.state === 'open') ? 503 : 200).json(upstreams);
});

const gateway = await listening(createServer(app), gatewayPort);
await ready(gateway.url, async () => {
  await gateway.close();
  await proxy.close();
  await orders.close();
});

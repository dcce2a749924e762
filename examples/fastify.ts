// Fastify gateway: the proxy is a plugin registered under a prefix. Bodies
// under that prefix stay raw streams; the app's parsers elsewhere are untouched.
// Run: npx tsx examples/fastify.ts   (then: curl -i localhost:3000/api/orders/7)

import Fastify from 'fastify';
import { fastifyProxy } from 'resilient-proxy/fastify';
import { gatewayPort, ready, startOrdersService } from './support.js';

const orders = await startOrdersService();

const app = Fastify();
await app.register(fastifyProxy, {
  prefix: '/api',
  target: orders.url,
  name: 'orders',
  timeout: { connect: 1_000, response: 5_000 },
});
app.post('/echo', (request) => request.body);

const url = await app.listen({ port: gatewayPort, host: '127.0.0.1' });
await ready(url, async () => {
  await app.close();
  await orders.close();
});

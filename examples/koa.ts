// Koa gateway: the proxy is a middleware, mounted under /api with koa-mount.
// It sets the proxied response on ctx (status, headers, a body stream) for Koa
// to send, so koa-compress and koa-logger see it, and never calls next.
// Run: npx tsx examples/koa.ts   (then: curl -i localhost:3000/api/orders/7)

import Koa from 'koa';
import mount from 'koa-mount';
import { koaProxy } from 'resilient-proxy/koa';
import { gatewayPort, listening, ready, startOrdersService } from './support.js';

const orders = await startOrdersService();

const app = new Koa();
const proxy = koaProxy({
  target: orders.url,
  name: 'orders',
  timeout: { connect: 1_000, response: 5_000 },
});
app.use(mount('/api', proxy));

const gateway = await listening(app.listen(gatewayPort, '127.0.0.1'));
await ready(gateway.url, async () => {
  await gateway.close();
  await proxy.close();
  await orders.close();
});

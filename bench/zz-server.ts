import { createServer } from 'node:http';
import { createProxy, UpstreamRegistry } from '../src/index.js';
import { refusedUrl } from '../src/testing/index.js';
const registry = new UpstreamRegistry();
const proxy = createProxy({ target: await refusedUrl(), name: 'o', retry: false, breaker: { volumeThreshold: 1, resetTimeout: 3_600_000 }, registry });
const server = createServer(proxy).listen(38211, '127.0.0.1');
process.on('SIGINT', () => { server.close(); registry.close(); void proxy.close(); process.exit(0); });
console.log('ready');

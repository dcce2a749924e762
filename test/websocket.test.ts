// WebSocket through the proxy, with `ws` on both sides: the handshake under
// the contract (timers, breaker, retries on another host), the tunnel (echo,
// close codes, idle timeout, either side vanishing), upgrades that must not
// be forwarded, and no handle left behind.

import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, Socket, type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import express from 'express';
import express4 from 'express4';
import Fastify, { type FastifyInstance } from 'fastify';
import Fastify4 from 'fastify4';
import Koa from 'koa';
import Koa2 from 'koa2';
import mount from 'koa-mount';
import { describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { createProxy, type FailureEvent, type ProxyOptions, type RetryEvent } from '../src/index.js';
import { fastifyProxy } from '../src/fastify.js';
import { koaProxy } from '../src/koa.js';
import { refusedUrl } from '../src/testing/index.js';
import { listen, onCleanup, proxy, testRegistry } from './support.js';

/** A `ws` server on port 0 that echoes, answers `close:<code>` by closing with that code, and records its connections. */
async function wsUpstream(options: { verifyClient?: (info: { req: IncomingMessage }, done: (ok: boolean, code?: number, message?: string) => void) => void } = {}) {
  const server = createServer();
  const wss = new WebSocketServer({ server, ...(options.verifyClient && { verifyClient: options.verifyClient }) });
  const sockets: WebSocket[] = [];
  const paths: string[] = [];
  const byPath = new Map<string, WebSocket>();
  wss.on('connection', (socket, req) => {
    sockets.push(socket);
    paths.push(req.url ?? '');
    byPath.set(req.url ?? '', socket);
    socket.on('message', (data, binary) => {
      const text = Buffer.from(data as Buffer).toString();
      if (!binary && text.startsWith('close:')) socket.close(Number(text.slice(6)), 'bye');
      else if (!binary && text === 'silence') return;
      else socket.send(data, { binary });
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onCleanup(async () => {
    for (const socket of wss.clients) socket.terminate();
    wss.close();
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, wss, sockets, paths, byPath };
}

/** A node:http gateway: requests to the proxy, upgrades too (mounted at /api). */
async function gateway(options: ProxyOptions): Promise<{ ws: string; server: Server }> {
  const handler = proxy(options);
  const { server, port } = await listen((req: IncomingMessage & { originalUrl?: string | undefined }, res: ServerResponse) => {
    // The client's target kept in `originalUrl`, as Connect and Express do: what hooks see as req.url.
    req.originalUrl = req.url;
    req.url = (req.url ?? '/').replace(/^\/api(?=\/|\?|$)/, '') || '/';
    handler(req, res);
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void handler.upgrade(req, socket, head, { mountPath: '/api' }));
  return { ws: `ws://127.0.0.1:${port}`, server };
}

function open(url: string, protocols?: string[]): Promise<WebSocket> {
  const socket = new WebSocket(url, protocols);
  onCleanup(() => socket.terminate());
  return new Promise((resolve, reject) => {
    socket.once('open', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** The answer to a handshake that did not upgrade: status, headers and body. */
function refusedHandshake(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: IncomingMessage['headers']; body: string }> {
  const socket = new WebSocket(url, { headers });
  onCleanup(() => socket.terminate());
  return new Promise((resolve, reject) => {
    socket.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    socket.once('open', () => reject(new Error('unexpectedly upgraded')));
    socket.once('error', () => undefined);
  });
}

/** Sends a raw upgrade request for `protocol` and returns everything the server said. */
function rawUpgrade(port: number, path: string, protocol: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = new Socket();
    let text = '';
    socket.connect(port, '127.0.0.1', () =>
      socket.write(`GET ${path} HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: ${protocol}\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n\r\n`),
    );
    socket.setEncoding('latin1').on('data', (chunk: string) => (text += chunk));
    socket.once('close', () => resolve(text));
  });
}

/** A raw `net` upstream: `answer` gets each connection once its request head is in. */
async function rawUpstream(answer: (socket: Socket, head: string) => void): Promise<{ url: string; port: number }> {
  const server = createNetServer({ allowHalfOpen: true }, (socket) => {
    let head = '';
    socket.on('error', () => undefined);
    const onData = (chunk: Buffer): void => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      answer(socket, head);
    };
    socket.on('data', onData);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  onCleanup(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, port };
}

/** Sends a WebSocket handshake on a raw socket; `text` is everything read, `closed` settles when the server has finished (FIN or reset). */
function rawHandshake(port: number, path: string): { socket: Socket; text: () => string; closed: Promise<void>; head: Promise<string> } {
  const socket = new Socket({ allowHalfOpen: true });
  onCleanup(() => socket.destroy());
  let text = '';
  let gotHead!: (head: string) => void;
  const head = new Promise<string>((resolve) => (gotHead = resolve));
  socket.connect(port, '127.0.0.1', () =>
    socket.write(`GET ${path} HTTP/1.1\r\nhost: gateway.example\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`),
  );
  socket.setEncoding('latin1').on('data', (chunk: string) => {
    text += chunk;
    const end = text.indexOf('\r\n\r\n');
    if (end !== -1) gotHead(text.slice(0, end));
  });
  socket.on('error', () => undefined);
  // Half-open allowed, so the server's FIN is 'end', not yet 'close'.
  const closed = new Promise<void>((resolve) => {
    socket.once('end', resolve);
    socket.once('close', () => resolve());
  });
  return { socket, text: () => text, closed, head };
}

/** A head's header lines as [name, value] pairs, names lower-cased, in order. */
function headerLines(head: string): [string, string][] {
  return head
    .split('\r\n')
    .slice(1)
    .map((line) => {
      const colon = line.indexOf(':');
      return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()] as [string, string];
    });
}

function nextMessage(socket: WebSocket): Promise<{ data: RawData; binary: boolean }> {
  return new Promise((resolve) => socket.once('message', (data, binary) => resolve({ data, binary })));
}

function closed(socket: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => socket.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
}

describe('the tunnel', () => {
  it('echoes text and binary, with the mount path stripped and the subprotocol negotiated', async () => {
    const up = await wsUpstream();
    const { ws } = await gateway({ target: `${up.url}/v1` });

    const client = await open(`${ws}/api/chat?room=7`, ['chat.v2']);
    client.send('hello');
    const text = await nextMessage(client);
    client.send(Buffer.from([0, 1, 2, 255]));
    const binary = await nextMessage(client);

    expect(client.protocol).toBe('chat.v2');
    expect(up.paths).toStrictEqual(['/v1/chat?room=7']);
    expect([Buffer.from(text.data as Buffer).toString(), text.binary]).toStrictEqual(['hello', false]);
    expect([Buffer.from(binary.data as Buffer).toString('hex'), binary.binary]).toStrictEqual(['000102ff', true]);
  });

  it('passes close codes through in both directions', async () => {
    const up = await wsUpstream();
    const { ws } = await gateway({ target: up.url });

    const first = await open(`${ws}/api/x`);
    const fromUpstream = closed(first);
    first.send('close:4001');
    const second = await open(`${ws}/api/x`);
    const upstreamSide = up.sockets[1] as WebSocket;
    const seenUpstream = new Promise<number>((resolve) => upstreamSide.once('close', (code) => resolve(code)));
    second.close(4002, 'client done');

    expect(await fromUpstream).toStrictEqual({ code: 4001, reason: 'bye' });
    expect(await seenUpstream).toBe(4002);
  });

  it('a silent tunnel is closed by timeout.tunnelIdle, both sides', async () => {
    const up = await wsUpstream();
    const { ws } = await gateway({ target: up.url, timeout: { tunnelIdle: 100 } });

    const client = await open(`${ws}/api/x`);
    const upstreamClosed = new Promise<void>((resolve) => (up.sockets[0] as WebSocket).once('close', () => resolve()));

    expect((await closed(client)).code).toBe(1006);
    await upstreamClosed;
  });

  it("a half-close is passed on: the client's FIN reaches the upstream as end(), and the upstream's answer still reaches the client", async () => {
    const up = await rawUpstream((socket) => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n');
      socket.once('end', () => socket.end('bye after your FIN'));
      socket.resume();
    });
    const { server } = await gateway({ target: up.url });

    const client = rawHandshake((server.address() as AddressInfo).port, '/api/x');
    await client.head;
    client.socket.end();
    await client.closed;

    expect(client.text()).toBe('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\nbye after your FIN');
  });

  it("a half-close from the upstream is passed on too: the client can still send after the upstream's FIN", async () => {
    let received!: (text: string) => void;
    const late = new Promise<string>((resolve) => (received = resolve));
    const up = await rawUpstream((socket) => {
      socket.end('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\nserver done');
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
      socket.once('end', () => received(text));
    });
    const { server } = await gateway({ target: up.url });

    const client = rawHandshake((server.address() as AddressInfo).port, '/api/x');
    await client.closed;
    client.socket.end('late data from the client');

    expect(await late).toBe('late data from the client');
    expect(client.text()).toBe('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\nserver done');
  });

  it('a client that vanishes: the upstream socket is closed', async () => {
    const up = await wsUpstream();
    const { ws } = await gateway({ target: up.url });

    const client = await open(`${ws}/api/x`);
    const upstreamClosed = new Promise<void>((resolve) => (up.sockets[0] as WebSocket).once('close', () => resolve()));
    client.terminate();

    await upstreamClosed;
  });

  it('an upstream that vanishes: the client is closed', async () => {
    const up = await wsUpstream();
    const { ws } = await gateway({ target: up.url });

    const client = await open(`${ws}/api/x`);
    const clientClosed = closed(client);
    (up.sockets[0] as WebSocket).terminate();

    expect((await clientClosed).code).toBe(1006);
  });

  it('open tunnels show in the snapshot and count in flight; close() ends them', async () => {
    const up = await wsUpstream();
    const registry = testRegistry();
    const handler = proxy({ target: up.url, name: 'chat', registry });
    const { server, port } = await listen((_req: IncomingMessage, res: ServerResponse) => res.end());
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void handler.upgrade(req, socket, head));

    const client = await open(`ws://127.0.0.1:${port}/x`);
    expect(registry.get('chat')).toMatchObject({ tunnels: 1, inFlight: 1 });
    const clientClosed = closed(client);
    await handler.close();

    expect((await clientClosed).code).toBe(1006);
  });
});

describe('the handshake', () => {
  it('a refused upstream: the client reads the contract, on a GET retried on another host', async () => {
    const up = await wsUpstream();
    const dead = await refusedUrl();
    const events: FailureEvent[] = [];
    const { ws } = await gateway({ target: await refusedUrl(), name: 'chat', retry: { minDelay: 1, maxDelay: 1 }, hooks: { onFailure: (e) => events.push(e) } });
    const { ws: groupWs } = await gateway({ target: [dead, up.url], name: 'chat-group', balance: 'round-robin', retry: { minDelay: 1, maxDelay: 1 } });

    const answer = await refusedHandshake(`${ws}/api/x`);
    const client = await open(`${groupWs}/api/x`);

    expect(answer.status).toBe(502);
    expect(answer.headers['content-type']).toBe('application/problem+json');
    expect(answer.headers['proxy-status']).toBe('resilient-proxy; error=connection_refused');
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'UPSTREAM_CONNECT_REFUSED', upstream: 'chat', attempts: 3 });
    expect(events.map((e) => [e.code, e.upgrade])).toStrictEqual([['UPSTREAM_CONNECT_REFUSED', true]]);
    expect(client.readyState).toBe(WebSocket.OPEN);
  });

  it('a handshake is retried by the same rules as a GET: onRetry is told, with upgrade: true', async () => {
    const retries: RetryEvent[] = [];
    const target = await refusedUrl();
    const { ws } = await gateway({ target, name: 'chat', retry: { minDelay: 1, maxDelay: 1 }, hooks: { onRetry: (e) => retries.push(e) } });

    const answer = await refusedHandshake(`${ws}/api/x`);

    expect(answer.status).toBe(502);
    expect(retries.map((e) => [e.code, e.attempt, e.upgrade, e.target, e.method])).toStrictEqual([
      ['UPSTREAM_CONNECT_REFUSED', 1, true, target, 'GET'],
      ['UPSTREAM_CONNECT_REFUSED', 2, true, target, 'GET'],
    ]);
  });

  it('a 403 from the upstream is relayed as it is, body included', async () => {
    const up = await wsUpstream({ verifyClient: (_info, done) => done(false, 403, 'Forbidden') });
    const { ws } = await gateway({ target: up.url });

    const answer = await refusedHandshake(`${ws}/api/x`);

    expect(answer.status).toBe(403);
    expect(answer.body).toBe('Forbidden');
  });

  it('a non-101 answer whose body stalls is cut by timeout.idle: the client is closed, the slot released, close() resolves', async () => {
    const up = await rawUpstream((socket) => socket.write('HTTP/1.1 403 Forbidden\r\ncontent-length: 100\r\n\r\npartial'));
    const events: FailureEvent[] = [];
    const registry = testRegistry();
    const handler = createProxy({ target: up.url, name: 'chat', registry, timeout: { idle: 100 }, breaker: { capacity: 1 }, hooks: { onFailure: (e) => events.push(e) } });
    const { server, port } = await listen(handler);
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void handler.upgrade(req, socket, head));

    const first = rawHandshake(port, '/x');
    await first.closed;
    const second = rawHandshake(port, '/x');
    await second.closed;
    expect(registry.get('chat')).toMatchObject({ inFlight: 0 });
    await handler.close();

    expect(first.text()).toBe('HTTP/1.1 403 Forbidden\r\ncontent-length: 100\r\nconnection: close\r\n\r\npartial');
    expect(second.text().split('\r\n')[0]).toBe('HTTP/1.1 403 Forbidden');
    // As for any response whose body stalls after its head went out.
    expect(events.map((e) => [e.code, e.proxyStatus, e.upgrade])).toStrictEqual([
      ['UPSTREAM_RESPONSE_INCOMPLETE', 'connection_read_timeout', true],
      ['UPSTREAM_RESPONSE_INCOMPLETE', 'connection_read_timeout', true],
    ]);
  });

  it('close() ends a handshake whose non-101 answer stalls, and resolves', async () => {
    const up = await rawUpstream((socket) => socket.write('HTTP/1.1 403 Forbidden\r\ncontent-length: 100\r\n\r\npartial'));
    const handler = createProxy({ target: up.url, registry: testRegistry() });
    const { server, port } = await listen(handler);
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void handler.upgrade(req, socket, head));

    const client = rawHandshake(port, '/x');
    await client.head;
    await handler.close();
    await client.closed;

    expect(client.text().split('\r\n')[0]).toBe('HTTP/1.1 403 Forbidden');
  });

  it('a non-101 answer gets the hygiene and rewriting of any response: hop-by-hop headers dropped, Location and cookies rewritten', async () => {
    let upstreamPort = 0;
    const up = await rawUpstream((socket) =>
      socket.end(
        'HTTP/1.1 302 Found\r\n' +
          `location: http://127.0.0.1:${upstreamPort}/v1/login\r\n` +
          'set-cookie: sid=1; Domain=orders.internal; Path=/v1\r\n' +
          'upgrade: websocket\r\n' +
          'connection: close, x-internal\r\n' +
          'x-internal: 10.0.0.7\r\n' +
          'keep-alive: timeout=5\r\n' +
          'content-length: 0\r\n\r\n',
      ),
    );
    upstreamPort = up.port;
    const { server } = await gateway({ target: `${up.url}/v1`, cookieDomainRewrite: { 'orders.internal': 'gateway.example' }, cookiePathRewrite: { '/v1': '/api' } });

    const client = rawHandshake((server.address() as AddressInfo).port, '/api/chat');
    const head = await client.head;
    await client.closed;

    expect(head.split('\r\n')[0]).toBe('HTTP/1.1 302 Found');
    expect(headerLines(head)).toStrictEqual([
      ['location', 'http://gateway.example/api/login'],
      ['set-cookie', 'sid=1; Domain=gateway.example; Path=/api'],
      ['content-length', '0'],
      ['connection', 'close'],
    ]);
  });

  it('an upstream that never answers the handshake: 502 UPSTREAM_RESPONSE_TIMEOUT, once', async () => {
    const silent = createServer();
    let upgrades = 0;
    silent.on('upgrade', () => (upgrades += 1));
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    onCleanup(() => {
      silent.closeAllConnections();
      silent.close();
    });
    const { ws } = await gateway({ target: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`, timeout: { response: 100 } });

    const answer = await refusedHandshake(`${ws}/api/x`);

    expect(answer.status).toBe(502);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'UPSTREAM_RESPONSE_TIMEOUT', attempts: 1 });
    expect(upgrades).toBe(1);
  });

  it.each(['h2c', 'foo'])('Upgrade: %s is refused with 400 before reaching the upstream', async (protocol) => {
    const up = await wsUpstream();
    let reached = 0;
    up.server.on('request', () => (reached += 1));
    const { ws } = await gateway({ target: up.url });
    const port = new URL(ws).port;

    const answer = await rawUpgrade(Number(port), '/api/x', protocol);

    expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
    expect(answer).toContain('"code":"REQUEST_INVALID"');
    expect([reached, up.sockets.length]).toStrictEqual([0, 0]);
  });

  it('a request listener not wired for upgrades answers the contract instead of forwarding a plain GET', async () => {
    const up = await wsUpstream();
    let plainRequests = 0;
    up.server.on('request', () => (plainRequests += 1));
    const handler = proxy({ target: up.url });
    const { port } = await listen(handler);

    const answer = await refusedHandshake(`ws://127.0.0.1:${port}/x`);

    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'REQUEST_INVALID' });
    expect(plainRequests).toBe(0);
  });
});

type ExpressFactory = typeof express;
type FastifyFactory = () => FastifyInstance;
type KoaFactory = typeof Koa;

async function expressStart(factory: ExpressFactory, options: ProxyOptions): Promise<number> {
  const app = factory();
  const handler = proxy(options);
  app.use('/api', handler);
  const { server, port } = await listen(app);
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void handler.upgrade(req, socket, head, { mountPath: '/api' }));
  return port;
}

async function fastifyStart(factory: FastifyFactory, options: ProxyOptions): Promise<number> {
  const app = factory();
  await app.register(fastifyProxy, { prefix: '/api', registry: testRegistry(), ...options, websocket: true });
  await app.register(fastifyProxy, { prefix: '/other', target: await refusedUrl(), registry: testRegistry(), websocket: true });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  onCleanup(() => app.close());
  return Number(new URL(url).port);
}

async function koaStart(factory: KoaFactory, options: ProxyOptions): Promise<number> {
  const app = new factory();
  const middleware = koaProxy({ registry: testRegistry(), ...options });
  onCleanup(() => middleware.close());
  app.use(mount('/api', middleware));
  const { server, port } = await listen(app.callback() as Parameters<typeof listen>[0]);
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void middleware.upgrade(req, socket, head, { mountPath: '/api' }));
  return port;
}

describe.each([
  { name: 'Express 5', start: (options: ProxyOptions) => expressStart(express, options) },
  { name: 'Express 4', start: (options: ProxyOptions) => expressStart(express4, options) },
  { name: 'Fastify 5 (websocket: true, two plugins on one server)', start: (options: ProxyOptions) => fastifyStart(() => Fastify(), options) },
  { name: 'Fastify 4 (websocket: true, two plugins on one server)', start: (options: ProxyOptions) => fastifyStart(() => Fastify4() as unknown as FastifyInstance, options) },
  { name: 'Koa 3', start: (options: ProxyOptions) => koaStart(Koa, options) },
  { name: 'Koa 2', start: (options: ProxyOptions) => koaStart(Koa2, options) },
  {
    name: 'node:http',
    start: async (options: ProxyOptions) => Number(new URL((await gateway(options)).ws).port),
  },
])('$name', ({ name, start }) => {
  it('echoes text and binary under the mount path, passes a close code, and refuses h2c', async () => {
    const up = await wsUpstream();
    const port = await start({ target: `${up.url}/v1` });

    const client = await open(`ws://127.0.0.1:${port}/api/room`);
    client.send('ping');
    const text = await nextMessage(client);
    client.send(Buffer.from([7, 8]));
    const binary = await nextMessage(client);
    const closing = closed(client);
    client.send('close:4003');

    expect(Buffer.from(text.data as Buffer).toString()).toBe('ping');
    expect(Buffer.from(binary.data as Buffer).toString('hex')).toBe('0708');
    expect((await closing).code).toBe(4003);
    expect(up.paths).toStrictEqual(['/v1/room']);
    const h2c = await rawUpgrade(port, '/api/room', 'h2c');
    expect(h2c.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
    expect(up.sockets).toHaveLength(1);
    if (name.startsWith('Fastify')) {
      const refused = await refusedHandshake(`ws://127.0.0.1:${port}/other/x`);
      expect([refused.status, (JSON.parse(refused.body) as { code: string }).code]).toStrictEqual([502, 'UPSTREAM_CONNECT_REFUSED']);
    }
  });

  it('one shape with HTTP: hooks see req.url as the client sent it, the mount path is stripped, events carry the path sent upstream and the origin of the host tried', async () => {
    const [first, second] = [await refusedUrl(), await refusedUrl()];
    const seen: string[] = [];
    const events: { upgrade: boolean; path: string; target: string }[] = [];
    const port = await start({
      // Round-robin: the HTTP request goes to the first host, the handshake to the second.
      target: [`${first}/v1`, `${second}/v1`],
      balance: 'round-robin',
      slowStart: 0,
      retry: false,
      pathRewrite: (path, req) => (seen.push(`rewrite ${path} ${req.url}`), path),
      headers: { request: (headers, req) => (seen.push(`headers ${req.url}`), headers) },
      hooks: { onFailure: (event) => events.push({ upgrade: event.upgrade === true, path: event.path, target: event.target }) },
    });

    const plain = await fetch(`http://127.0.0.1:${port}/api/room?x=1`);
    await plain.text();
    const handshake = await refusedHandshake(`ws://127.0.0.1:${port}/api/room?x=1`);

    expect([handshake.status, plain.status]).toStrictEqual([502, 502]);
    expect(seen).toStrictEqual(['rewrite /room?x=1 /api/room?x=1', 'headers /api/room?x=1', 'rewrite /room?x=1 /api/room?x=1', 'headers /api/room?x=1']);
    expect(events).toStrictEqual([
      { upgrade: false, path: '/v1/room?x=1', target: first },
      { upgrade: true, path: '/v1/room?x=1', target: second },
    ]);
  });
});


describe('the mount path of an upgrade', () => {
  it("Express: an upgrade wired without mountPath, under the HTTP side's mount path, is said once as a process warning; with mountPath, nothing", async () => {
    const up = await wsUpstream();
    up.server.on('request', (_req: IncomingMessage, res: ServerResponse) => res.end('plain'));
    const warnings: string[] = [];
    const collect = (warning: Error & { code?: string }): void => {
      if (warning.code === 'RESILIENT_PROXY_UPGRADE_MOUNT') warnings.push(warning.message);
    };
    process.on('warning', collect);
    onCleanup(() => process.off('warning', collect));
    const start = async (upgradeOptions: { mountPath?: string }): Promise<number> => {
      const app = express();
      const handler = proxy({ target: up.url });
      app.use('/api', handler);
      const { server, port } = await listen(app);
      server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void handler.upgrade(req, socket, head, upgradeOptions));
      return port;
    };
    const bare = await start({});
    const wired = await start({ mountPath: '/api' });

    for (const port of [bare, wired]) {
      await (await fetch(`http://127.0.0.1:${port}/api/x`)).text();
      for (const room of ['/api/a', '/api/b']) (await open(`ws://127.0.0.1:${port}${room}`)).terminate();
    }
    await new Promise((resolve) => setImmediate(resolve));

    expect(up.paths).toStrictEqual(['/api/a', '/api/b', '/a', '/b']);
    expect(warnings).toStrictEqual([
      "resilient-proxy: an upgrade to /api… came without `mountPath`, while HTTP requests reach this proxy under /api: the upstream gets the mount path in the upgrade's path only. Pass `{ mountPath: '/api' }` to proxy.upgrade() (or `mountPath: ''` if that is meant).",
    ]);
  });
});
describe('soak', () => {
  it('2,000 tunnels opened and killed at random leave no tunnel, in-flight count or socket behind', async () => {
    const up = await wsUpstream();
    const registry = testRegistry();
    const handler = proxy({ target: up.url, name: 'soak', registry, retry: false, breaker: false });
    const { server, port } = await listen((_req: IncomingMessage, res: ServerResponse) => res.end());
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void handler.upgrade(req, socket, head));
    const before = process.getActiveResourcesInfo().filter((kind) => kind === 'TCPSocketWrap').length;
    let seed = 42;
    const random = (): number => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);

    let next = 0;
    const one = async (): Promise<void> => {
      const path = `/x?n=${(next += 1)}`;
      const client = new WebSocket(`ws://127.0.0.1:${port}${path}`);
      const gone = new Promise<void>((resolve) => client.once('close', () => resolve()));
      client.on('error', () => undefined);
      const fate = random();
      if (fate < 0.15) {
        // The client leaves during the handshake.
        setImmediate(() => client.terminate());
        return gone;
      }
      await new Promise<void>((resolve) => {
        client.once('open', () => resolve());
        client.once('close', () => resolve());
      });
      if (client.readyState !== WebSocket.OPEN) return gone;
      client.send('x');
      await new Promise((resolve) => client.once('message', resolve));
      if (fate < 0.5) client.terminate();
      else if (fate < 0.75) client.close(1000);
      else up.byPath.get(path)?.terminate();
      return gone;
    };
    for (let batch = 0; batch < 40; batch += 1) await Promise.all(Array.from({ length: 50 }, one));

    await expect.poll(() => registry.get('soak')?.tunnels, { timeout: 5_000 }).toBe(0);
    expect(registry.get('soak')?.inFlight).toBe(0);
    await expect.poll(() => up.wss.clients.size, { timeout: 5_000 }).toBe(0);
    await expect.poll(() => process.getActiveResourcesInfo().filter((kind) => kind === 'TCPSocketWrap').length, { timeout: 5_000 }).toBeLessThanOrEqual(before);
  }, 60_000);
});

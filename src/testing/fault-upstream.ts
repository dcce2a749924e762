// A scripted, misbehaving upstream on loopback for tests: each request it
// receives plays the next queued behaviour (or the fallback), and every
// request is recorded so a test can count hits and check what arrived.

import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';

/** What one request to the fault upstream did. */
export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  /** The body as received, kept up to `recordBodyBytes` bytes. */
  readonly body: Buffer;
  /** Total body bytes received and their SHA-256 (hex), however large. */
  readonly bodyBytes: number;
  readonly bodySha256: string;
  /** Resolves when the connection that carried this request closed. */
  readonly closed: Promise<void>;
}

export interface BehaviourContext {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly socket: Socket;
  /** Zero-based number of this request among all the upstream received. */
  readonly index: number;
}

/** What the upstream does with one request, once its body has been read. */
export type Behaviour = (context: BehaviourContext) => void;

const CRLF = '\r\n';

const closedPromises = new WeakMap<Socket, Promise<void>>();

/** One promise per connection, however many requests it carries. */
function closedPromise(socket: Socket): Promise<void> {
  let closed = closedPromises.get(socket);
  if (closed === undefined) {
    // Not events.once: it would reject when the socket errors first.
    closed = socket.destroyed ? Promise.resolve() : new Promise((resolve) => socket.once('close', () => resolve()));
    closedPromises.set(socket, closed);
  }
  return closed;
}

function rawResponse(socket: Socket, head: string, then?: (socket: Socket) => void): void {
  socket.write(head, () => then?.(socket));
}

/** Ready-made behaviours. Each is a value you can queue or use as the fallback. */
export const faults = {
  /** Answers `status` with `body` (default: a short text body). */
  respond(status = 200, body: string | Buffer = 'ok', headers: Record<string, string> = {}): Behaviour {
    return ({ res }) => {
      res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), ...headers });
      res.end(body);
    };
  },
  /** Answers `status` (e.g. 503) with an optional `Retry-After` (seconds or an HTTP date). */
  status(status: number, options: { retryAfter?: string | number } = {}): Behaviour {
    const headers: Record<string, string> = {};
    if (options.retryAfter !== undefined) headers['retry-after'] = String(options.retryAfter);
    return faults.respond(status, `upstream says ${status}`, headers);
  },
  /** Reads the request and never answers. */
  hang(): Behaviour {
    return () => undefined;
  },
  /** Reads the request, then resets the connection (RST) before any response byte. */
  resetBeforeHeaders(): Behaviour {
    return ({ socket }) => socket.resetAndDestroy();
  },
  /** Reads the request, then closes the connection cleanly (FIN) before any response byte. */
  closeBeforeHeaders(): Behaviour {
    return ({ socket }) => socket.end();
  },
  /** Sends a status line that is not HTTP. */
  malformedStatusLine(): Behaviour {
    return ({ socket }) => rawResponse(socket, `HTTP/1.1 twohundred OK${CRLF}content-length: 0${CRLF}${CRLF}`, (s) => s.end());
  },
  /** Sends a response header section of `bytes` (default 64 KiB, over every default limit). */
  oversizedHeaders(bytes = 64 * 1024): Behaviour {
    return ({ socket }) =>
      rawResponse(socket, `HTTP/1.1 200 OK${CRLF}x-big: ${'a'.repeat(bytes)}${CRLF}content-length: 0${CRLF}${CRLF}`);
  },
  /** Sends headers announcing `length` bytes and the first `sent` of them, then stalls. */
  headersThenStall(length = 1024, sent = 10): Behaviour {
    return ({ socket }) =>
      rawResponse(socket, `HTTP/1.1 200 OK${CRLF}content-type: text/plain${CRLF}content-length: ${length}${CRLF}${CRLF}${'x'.repeat(sent)}`);
  },
  /** Sends headers and part of the body, then closes cleanly (FIN) mid-body. */
  closeMidBody(length = 1024, sent = 10): Behaviour {
    return ({ socket }) =>
      rawResponse(socket, `HTTP/1.1 200 OK${CRLF}content-type: text/plain${CRLF}content-length: ${length}${CRLF}${CRLF}${'x'.repeat(sent)}`, (s) => s.end());
  },
  /** Sends headers and part of the body, then resets (RST) mid-body. */
  resetMidBody(length = 1024, sent = 10): Behaviour {
    return ({ socket }) =>
      rawResponse(socket, `HTTP/1.1 200 OK${CRLF}content-type: text/plain${CRLF}content-length: ${length}${CRLF}${CRLF}${'x'.repeat(sent)}`, (s) =>
        s.resetAndDestroy(),
      );
  },
  /** Sends a chunked body whose second chunk size is not hexadecimal. */
  badChunk(): Behaviour {
    return ({ socket }) =>
      rawResponse(socket, `HTTP/1.1 200 OK${CRLF}content-type: text/plain${CRLF}transfer-encoding: chunked${CRLF}${CRLF}5${CRLF}hello${CRLF}zz${CRLF}`);
  },
  /** Writes `bytes` as the whole response, exactly as given. */
  raw(bytes: string | Buffer, then: 'end' | 'reset' | 'hang' = 'end'): Behaviour {
    return ({ socket }) =>
      socket.write(bytes, () => {
        if (then === 'end') socket.end();
        else if (then === 'reset') socket.resetAndDestroy();
      });
  },
  /** Echoes the request: status 200, a JSON summary of method, url and headers, or the body itself with `{ body: true }`. */
  echo(options: { body?: boolean } = {}): Behaviour {
    return ({ req, res }) => {
      if (options.body === true) {
        const recorded = (req as IncomingMessage & { recordedBody?: Buffer }).recordedBody ?? Buffer.alloc(0);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': recorded.length });
        res.end(recorded);
        return;
      }
      const body = JSON.stringify({ method: req.method, url: req.url, headers: req.headers });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
  },
} as const;

export interface FaultUpstreamOptions {
  /** Played when the queue is empty. Default: `faults.respond(200, 'ok')`. */
  fallback?: Behaviour;
  /** Serve HTTPS with this key and certificate (PEM). */
  tls?: { key: string | Buffer; cert: string | Buffer };
  /** Loopback address to listen on. Default `127.0.0.1`. */
  host?: string;
  /** Body bytes kept per recorded request. Default 1 MiB. */
  recordBodyBytes?: number;
  /**
   * Keep every request in `requests`. Default `true`; turn it off for long
   * soaks, where the record would grow without bound (`requestCount` still counts).
   */
  recordRequests?: boolean;
}

export interface FaultUpstream {
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  readonly port: number;
  /** Every request received, in order (empty with `recordRequests: false`). */
  readonly requests: readonly RecordedRequest[];
  /** How many requests were received. */
  readonly requestCount: number;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Queues behaviours for the next requests, in order. */
  enqueue(...behaviours: Behaviour[]): this;
  /** Replaces the fallback behaviour. */
  setFallback(behaviour: Behaviour): this;
  /** Resolves once `count` requests have been received. */
  waitForRequests(count: number): Promise<void>;
  /** Stops listening and destroys every open connection. */
  close(): Promise<void>;
}

/** Starts a fault upstream on a free loopback port. */
export async function startFaultUpstream(options: FaultUpstreamOptions = {}): Promise<FaultUpstream> {
  const queue: Behaviour[] = [];
  let fallback = options.fallback ?? faults.respond(200, 'ok');
  const requests: RecordedRequest[] = [];
  const waiters: { count: number; resolve: () => void }[] = [];
  const sockets = new Set<Socket>();
  let connections = 0;
  let requestCount = 0;
  const recording = options.recordRequests ?? true;
  const keep = recording ? (options.recordBodyBytes ?? 1024 * 1024) : 0;

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const socket = req.socket;
    const hash = createHash('sha256');
    const kept: Buffer[] = [];
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      if (bytes < keep) kept.push(chunk.subarray(0, keep - bytes));
      bytes += chunk.length;
    });
    req.on('error', () => undefined);
    req.once('end', () => {
      const body = Buffer.concat(kept);
      (req as IncomingMessage & { recordedBody?: Buffer }).recordedBody = body;
      const index = requestCount;
      requestCount += 1;
      if (recording) requests.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body,
        bodyBytes: bytes,
        bodySha256: hash.digest('hex'),
        closed: closedPromise(socket),
      });
      for (const waiter of waiters.filter((w) => requestCount >= w.count)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
      const behaviour = queue.shift() ?? fallback;
      behaviour({ req, res, socket, index });
    });
  };

  const server: Server = options.tls === undefined ? createHttpServer(onRequest) : createHttpsServer(options.tls, onRequest);
  // Raw behaviours write their own bytes: Node's timers must not interfere.
  server.requestTimeout = 0;
  server.headersTimeout = 0;
  server.keepAliveTimeout = 60_000;
  server.on('connection', (socket: Socket) => {
    connections += 1;
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('clientError', (_error, socket) => socket.destroy());
  server.listen(0, options.host ?? '127.0.0.1');
  await once(server, 'listening');
  const { port, address } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;

  const upstream: FaultUpstream = {
    url: `${options.tls === undefined ? 'http' : 'https'}://${host}:${port}`,
    port,
    requests,
    get connections() {
      return connections;
    },
    get requestCount() {
      return requestCount;
    },
    enqueue(...behaviours) {
      queue.push(...behaviours);
      return upstream;
    },
    setFallback(behaviour) {
      fallback = behaviour;
      return upstream;
    },
    waitForRequests(count) {
      if (requestCount >= count) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ count, resolve }));
    },
    async close() {
      const closed = once(server, 'close');
      server.close();
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
  return upstream;
}

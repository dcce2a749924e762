// WebSocket upgrades: the handshake is an attempt like any GET, run by the
// same machinery (attempt-loop.ts: a host of the group, the breaker, the
// concurrency limit, retries on another host when nothing reached the
// upstream); what differs is the strategy: the attempt is a Handshake with its
// own connect and response timers, answered on the raw socket, and
// "delivered" is either a relayed non-101 answer or a `101`, after which the
// two sockets are joined into a tunnel that relays bytes both ways with
// backpressure, ends on `idle` silence, and destroys both sides when either
// leaves. Only `Upgrade: websocket` is forwarded.

import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { Phase } from '../contract/classify.js';
import { ClientAbortedError, isClientAborted, ProxyTimeoutError, RewriteHookError } from '../contract/errors.js';
import { FAILURES } from '../contract/failures.js';
import { sendProblemOnSocket } from '../contract/problem.js';
import type { FailureEvent } from '../observe/hooks.js';
import { ownAttemptHeader } from '../policy/retry-options.js';
import type { Host } from '../upstream/group.js';
import { dispatchAttempt, type AttemptOutcome } from './attempt.js';
import { AttemptLoop, type UpstreamCall } from './attempt-loop.js';
import { callHook } from './call-hook.js';
import type { ProxyCore } from './core.js';
import { failureOf, problemInput, statusFor, type Failure, type Outcome } from './failure.js';
import { clientResponseHeaders, requestId, upstreamRequestHeaders } from './headers.js';
import { settleHook } from './hook-time.js';
import type { ResponseSide } from './response-rewrite.js';
import { hookedRequestHeaders, patchHeaders, plainHeaders } from './rewrite.js';
import { upstreamPath } from './upstream-path.js';
import { endExchange, exchangeEnd, exchangeMessage, exchangeStart, refusalChannel, type ExchangeMessage } from '../observe/channels.js';

export interface UpgradeOptions {
  /**
   * Where the app mounted the proxy (`/api`): stripped from the path as the
   * HTTP side strips a framework's mount path. Needed with Express, Koa and
   * node:http, whose routers never see an 'upgrade' event (Fastify's
   * `websocket: true` passes its prefix). A request outside it is refused.
   * Default `''`.
   */
  readonly mountPath?: string;
}

/** The upstream's `101`: its head, and the socket the tunnel joins. */
interface Upgraded {
  readonly headers: IncomingHttpHeaders;
  readonly socket: Duplex;
}

/** Whether `req` asks to switch to WebSocket, the only upgrade the proxy forwards. */
export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  const upgrade = req.headers.upgrade;
  return typeof upgrade === 'string' && upgrade.trim().toLowerCase() === 'websocket';
}

/** Whether `req` asks for any protocol upgrade (`Connection: upgrade` with an `Upgrade` header). */
export function asksForUpgrade(req: IncomingMessage): boolean {
  const connection = req.headers.connection;
  return req.headers.upgrade !== undefined && typeof connection === 'string' && /(?:^|,)\s*upgrade\s*(?:,|$)/i.test(connection);
}

function headLines(headers: IncomingHttpHeaders | OutgoingHttpHeaders): string {
  let lines = '';
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    for (const item of Array.isArray(value) ? value : [value]) lines += `${name}: ${String(item)}\r\n`;
  }
  return lines;
}

/**
 * One handshake with one host. Settles once: `delivered` for a `101`
 * (`upgraded` then holds the upstream's socket) or a non-101 answer relayed
 * to the client, `status` for a failure status, `failed` otherwise.
 */
class Handshake implements Dispatcher.DispatchHandler, UpstreamCall {
  readonly #promise: Promise<AttemptOutcome>;
  #resolve!: (outcome: AttemptOutcome) => void;
  #settled = false;
  #phase: Phase = 'connect';
  #timer: NodeJS.Timeout | null = null;
  #controller: Dispatcher.DispatchController | null = null;
  #reason: Error | null = null;
  /** A non-101 answer being relayed to the client as it came (its status), or 0. */
  #relaying = 0;
  #discarding: { statusCode: number; headers: IncomingHttpHeaders } | null = null;
  /** The upstream's `101`, once it came. */
  upgraded: Upgraded | null = null;
  /** A handshake's latency is not measured: it tells balancing and adaptive limits nothing (0 for none). */
  readonly sentAt = 0;
  readonly headersAt = 0;
  /** The status delivered to the client (101, or the relayed answer's), 0 before. */
  statusCode = 0;

  constructor(
    readonly host: Host,
    readonly path: string,
    readonly headers: Record<string, string | string[]>,
    readonly client: Duplex,
    readonly core: ProxyCore,
    readonly side: ResponseSide,
  ) {
    this.#promise = new Promise((resolve) => {
      this.#resolve = resolve;
    });
  }

  start(): Promise<AttemptOutcome> {
    this.#arm('connect');
    const refused = dispatchAttempt(this.host.dispatcher, { origin: this.host.origin, path: this.path, method: 'GET', headers: this.headers, upgrade: 'websocket' }, this);
    if (refused !== null) this.#settle(refused);
    return this.#promise;
  }

  abort(reason: Error): void {
    if (this.#settled) return;
    // The answer's head already went out: the client connection is cut.
    if (this.#relaying !== 0) this.client.destroy();
    this.#settle({ kind: 'failed', error: reason, phase: this.#phase });
    this.#reason = reason;
    this.#controller?.abort(reason);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    if (this.#reason !== null) {
      controller.abort(this.#reason);
      return;
    }
    this.#controller = controller;
    // The handshake has no body: it is sent as soon as the connection is.
    this.#phase = 'response';
    this.#arm('response');
  }

  onRequestUpgrade(_controller: Dispatcher.DispatchController, _statusCode: number, headers: IncomingHttpHeaders, socket: Duplex): void {
    if (this.#settled) {
      socket.destroy();
      return;
    }
    this.upgraded = { headers, socket };
    this.statusCode = 101;
    this.#settle({ kind: 'delivered' });
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (this.#settled || statusCode < 200) return;
    if (this.core.config.failureStatuses.has(statusCode)) {
      // A failure status is the upstream's failure, like any GET's.
      this.#discarding = { statusCode, headers };
      return;
    }
    // The same hygiene and rewriting as any response: hop-by-hop headers
    // (`Upgrade` among them) dropped, redirects and cookies rewritten,
    // `headers.response` applied. The body is relayed as it comes, to the close.
    let relayed: OutgoingHttpHeaders;
    try {
      relayed = clientResponseHeaders(headers);
      if (this.core.rewrite !== null) relayed = this.core.rewrite(statusCode, relayed, this.side);
    } catch (error) {
      this.#settle({ kind: 'failed', error, phase: 'response' });
      controller.abort(error as Error);
      return;
    }
    relayed.connection = 'close';
    this.#relaying = statusCode;
    this.#phase = 'body';
    this.#arm('idle');
    this.client.write(`HTTP/1.1 ${statusCode} ${statusMessage ?? ''}\r\n${headLines(relayed)}\r\n`);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#settled || this.#relaying === 0) return;
    this.#arm('idle');
    if (!this.client.write(chunk)) {
      controller.pause();
      this.client.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(): void {
    if (this.#settled) return;
    if (this.#discarding !== null) {
      this.#settle({ kind: 'status', ...this.#discarding });
      return;
    }
    this.client.end();
    this.statusCode = this.#relaying;
    this.#settle({ kind: 'delivered' });
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.#settled) return;
    if (this.#discarding !== null) {
      this.#settle({ kind: 'status', ...this.#discarding });
      return;
    }
    if (this.#relaying !== 0) this.client.destroy();
    this.#settle({ kind: 'failed', error, phase: this.#phase });
  }

  #arm(kind: 'connect' | 'response' | 'idle'): void {
    this.#disarm();
    const ms = this.core.config.timeout[kind];
    if (ms > 0) this.#timer = setTimeout(() => this.abort(new ProxyTimeoutError(kind, ms)), ms);
  }

  #disarm(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #settle(outcome: AttemptOutcome): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#disarm();
    this.#resolve(outcome);
  }
}

/** `path` is the path sent (or to be sent) upstream, '' before it is known; `target` the origin of the latest attempt's host: as for HTTP. */
function reply(core: ProxyCore, req: IncomingMessage, socket: Duplex, id: string, path: string, initial: Failure, attempts: number, message: ExchangeMessage | null, target = core.config.origin): void {
  const { config } = core;
  const { status, failure } = statusFor(config, initial);
  sendProblemOnSocket(req, socket, problemInput(config, failure, status, attempts, id));
  const event: FailureEvent = {
    code: failure.code,
    proxyStatus: failure.proxyStatus,
    phase: failure.phase,
    upstream: config.upstream,
    target,
    requestId: id,
    method: req.method ?? 'GET',
    path,
    receivedStatus: failure.receivedStatus,
    error: failure.error,
    attempts,
    statusCode: status,
    upgrade: true,
  };
  callHook(config.hooks.onFailure, event);
  if (message !== null) endExchange(message, 'contract', status, failure.code, attempts);
}

/** Joins the client and the upstream after `101`; `onEnd` runs once, when both are gone. */
function tunnel(client: Duplex, upstream: Duplex, idle: number, onEnd: () => void): () => void {
  let ended = false;
  const end = (): void => {
    if (ended) return;
    ended = true;
    client.destroy();
    upstream.destroy();
    onEnd();
  };
  for (const side of [client, upstream]) {
    // A half-close (FIN) is passed on as end() to the other side, which may
    // still answer, as a TCP proxy does: a side closes once both its
    // directions are done.
    (side as Duplex & { allowHalfOpen: boolean }).allowHalfOpen = true;
    side.on('error', end);
    side.once('close', end);
    // Messages are small and interactive: Nagle's algorithm would hold each
    // one back for the peer's delayed ACK, about 40 ms.
    (side as Duplex & { setNoDelay?: (noDelay: boolean) => void }).setNoDelay?.(true);
  }
  // pipe() applies backpressure both ways and passes a half-close on.
  client.pipe(upstream);
  upstream.pipe(client);
  const socket = client as Duplex & { setTimeout?: (ms: number, listener?: () => void) => void };
  // Activity in either direction is a read or a write on the client's socket.
  if (idle > 0) socket.setTimeout?.(idle, end);
  return end;
}

/** Upgrades under one proxy, and the tunnels it keeps open. */
export class Upgrades {
  readonly #open = new Set<() => void>();
  /** Upgrades whose handshake is under way, ended by close() like the tunnels. */
  readonly #upgrading = new Set<Upgrade>();

  /** The latest mount path an HTTP request came under, '' before any: to tell an upgrade wired without it. */
  #httpMount = '';
  #warnedMount = false;

  constructor(readonly core: ProxyCore) {}

  /** An HTTP request reached the proxy under `mountPath` (Express's `baseUrl`, koa-mount's, Fastify's prefix). */
  sawMount(mountPath: string): void {
    this.#httpMount = mountPath;
  }

  /**
   * An upgrade the app handed over without `mountPath`, under the path HTTP
   * requests come under: its upstream path keeps the mount path theirs lose.
   * Said once per proxy, as a process warning; `mountPath: ''` says it is meant.
   */
  #warnUnmounted(url: string): void {
    const mount = this.#httpMount;
    if (this.#warnedMount || mount === '' || (url !== mount && !url.startsWith(`${mount}/`) && !url.startsWith(`${mount}?`))) return;
    this.#warnedMount = true;
    process.emitWarning(
      `resilient-proxy: an upgrade to ${mount}… came without \`mountPath\`, while HTTP requests reach this proxy under ${mount}: the upstream gets the mount path in the upgrade's path only. Pass \`{ mountPath: '${mount}' }\` to proxy.upgrade() (or \`mountPath: ''\` if that is meant).`,
      { code: 'RESILIENT_PROXY_UPGRADE_MOUNT' },
    );
  }

  get open(): number {
    return this.#open.size;
  }

  /** Ends every tunnel and handshake of this proxy. */
  closeAll(): void {
    for (const end of [...this.#open]) end();
    for (const upgrade of [...this.#upgrading]) upgrade.close();
  }

  /** Publishes a refusal to call the upstream during a handshake. */
  #refused(req: IncomingMessage, id: string, path: string, code: 'CIRCUIT_OPEN' | 'UPSTREAM_OVERLOADED', attempts: number): void {
    if (!refusalChannel.hasSubscribers) return;
    refusalChannel.publish({
      upstream: this.core.config.upstream,
      requestId: id,
      method: req.method ?? 'GET',
      path,
      reason: code === 'CIRCUIT_OPEN' ? 'circuit_open' : 'capacity',
      code,
      attempts,
      upgrade: true,
    });
  }

  /** Handles a server's `'upgrade'` event for this proxy. Never throws; every path ends the socket or opens a tunnel. */
  async handle(req: IncomingMessage, socket: Duplex, head: Buffer, options: UpgradeOptions = {}): Promise<void> {
    const { config, upstream } = this.core;
    const id = requestId(req, config.requestIdHeader);
    // Published once the upstream path is known, or with '' for a request that has none.
    const begin = (path: string): ExchangeMessage | null => {
      if (!exchangeStart.hasSubscribers && !exchangeEnd.hasSubscribers) return null;
      const message = exchangeMessage(id, config.upstream, req.method ?? 'GET', path, req, true);
      if (exchangeStart.hasSubscribers) exchangeStart.publish(message);
      return message;
    };
    socket.on('error', () => socket.destroy());
    const path = this.#upstreamPath(req, options.mountPath);
    if (typeof path !== 'string') {
      const failure: Failure =
        path === null
          ? { code: 'REQUEST_INVALID', proxyStatus: 'http_request_error', phase: null, error: null, receivedStatus: null, retryAfter: null }
          : { code: 'PROXY_INTERNAL_ERROR', proxyStatus: 'proxy_internal_error', phase: null, error: path, receivedStatus: null, retryAfter: null };
      reply(this.core, req, socket, id, '', failure, 0, begin(''));
      return;
    }
    const message = begin(path);
    const refused = upstream.breaker?.refusal() ?? null;
    if (refused !== null) {
      this.#refused(req, id, path, 'CIRCUIT_OPEN', 0);
      reply(this.core, req, socket, id, path, { code: 'CIRCUIT_OPEN', proxyStatus: FAILURES.CIRCUIT_OPEN.proxyStatus, phase: null, error: null, receivedStatus: null, retryAfter: String(refused) }, 0, message);
      return;
    }
    // A discovered group before its first list (discovery never empties one later).
    if (upstream.group.hosts.length === 0) {
      reply(this.core, req, socket, id, path, { code: 'UPSTREAM_DNS_FAILED', proxyStatus: 'dns_error', phase: null, error: new Error('No host discovered yet.'), receivedStatus: null, retryAfter: null }, 0, message);
      return;
    }
    let headers: Record<string, string | string[]>;
    try {
      headers = await this.#headers(req, id);
    } catch (error) {
      reply(this.core, req, socket, id, path, { code: 'PROXY_INTERNAL_ERROR', proxyStatus: 'proxy_internal_error', phase: null, error, receivedStatus: null, retryAfter: null }, 0, message);
      return;
    }
    const side: ResponseSide = { req, mountPath: options.mountPath ?? '', clientUrl: req.url ?? '/' };
    const upgrade = new Upgrade(this.core, req, socket, head, id, path, headers, message, side, this.#open);
    this.#upgrading.add(upgrade);
    try {
      await upgrade.run();
    } finally {
      this.#upgrading.delete(upgrade);
    }
  }

  /**
   * The path to send upstream: the mount path stripped, `pathRewrite` applied.
   * `null` for a request the proxy refuses (not a WebSocket GET — h2c and the
   * rest are request-smuggling vectors through proxies —, outside the mount
   * path, or a path it will not send); the error when `pathRewrite` threw.
   */
  #upstreamPath(req: IncomingMessage, mount: string | undefined): string | RewriteHookError | null {
    const { config } = this.core;
    if (!isWebSocketUpgrade(req) || req.method !== 'GET') return null;
    const mountPath = mount ?? '';
    let url = req.url ?? '/';
    if (mount === undefined) this.#warnUnmounted(url);
    if (mountPath !== '') {
      if (url !== mountPath && !url.startsWith(`${mountPath}/`) && !url.startsWith(`${mountPath}?`)) return null;
      url = url.slice(mountPath.length) || '/';
      if (url.startsWith('?')) url = `/${url}`;
    }
    try {
      return upstreamPath(config.basePath, config.pathRewrite === null ? url : config.pathRewrite(url, req));
    } catch (error) {
      return new RewriteHookError('The `pathRewrite` function threw', { cause: error });
    }
  }

  async #headers(req: IncomingMessage, id: string): Promise<Record<string, string | string[]>> {
    const { config } = this.core;
    const built = upstreamRequestHeaders(req, { requestIdHeader: config.requestIdHeader, requestId: id, host: config.changeOrigin ? undefined : req.headers.host, trustProxy: config.trustProxy, attemptHeader: ownAttemptHeader(config) });
    const hook = config.requestHeaders;
    if (hook === null) return built;
    if (typeof hook !== 'function') return patchHeaders(built, hook);
    // Bounded by `timeout.hook`: the handshake has no other timer yet.
    return hookedRequestHeaders(built, await settleHook('headers.request', config.timeout.hook, () => hook(plainHeaders(built), req)));
  }
}

/**
 * One upgrade's handshake, run by the attempt machinery every request runs
 * through. The strategy: each attempt is a Handshake on the raw socket; a
 * `101` keeps its slot (in flight, the host's active count) for the tunnel.
 */
class Upgrade extends AttemptLoop {
  /** The latest handshake: the one a delivered outcome came from. */
  #latest: Handshake | null = null;
  /** The tunnel is open (or the client was gone when the `101` came): the `101` is spoken for. */
  #joined = false;

  constructor(
    core: ProxyCore,
    readonly req: IncomingMessage,
    readonly socket: Duplex,
    readonly head: Buffer,
    requestId: string,
    path: string,
    readonly headers: Record<string, string | string[]>,
    readonly message: ExchangeMessage | null,
    readonly side: ResponseSide,
    /** The proxy's open tunnels, each by the function that ends it. */
    readonly tunnels: Set<() => void>,
  ) {
    super(core, requestId, path, true);
  }

  /** Only a GET asks for WebSocket (checked before). */
  get method(): string {
    return 'GET';
  }

  protected open(host: Host, _n: number): Handshake {
    if (this.core.config.changeOrigin) this.headers.host = host.authority;
    const handshake = new Handshake(host, this.path, this.headers, this.socket, this.core, this.side);
    this.#latest = handshake;
    return handshake;
  }

  /** A relayed answer is delivered, never retried: nothing else has started. */
  protected responseStarted(): boolean {
    return false;
  }

  protected replayable(): boolean {
    return true;
  }

  protected override holdsSlot(call: UpstreamCall): boolean {
    return call instanceof Handshake && call.upgraded !== null;
  }

  /** The proxy is closing: the client's socket goes, and whatever is under way ends. */
  close(): void {
    this.socket.destroy();
    this.cancel(new ClientAbortedError());
  }

  readonly #onGone = (): void => {
    this.cancel(new ClientAbortedError());
  };

  /** Runs the handshake's attempts (timeout.total bounds them with their retries, as it bounds a request), then ends the upgrade. */
  async run(): Promise<void> {
    this.socket.once('close', this.#onGone);
    this.startDeadline(this.core.config.timeout.total);
    try {
      const outcome = this.unguarded(await this.attemptLoop());
      this.current = null;
      this.#finish(outcome);
    } finally {
      this.stopDeadline();
      this.socket.off('close', this.#onGone);
      // A `101` left unjoined (a bug between the handshake and here) must not hold its socket and slot.
      const upgraded = this.#latest?.upgraded ?? null;
      if (upgraded !== null && !this.#joined) {
        upgraded.socket.destroy();
        this.#release(this.#latest as Handshake);
      }
    }
  }

  /** Delivered (a tunnel, or a relayed answer), the client gone, or the contract on the socket. */
  #finish(outcome: Outcome): void {
    const { message } = this;
    const handshake = this.#latest;
    if (outcome.kind === 'delivered' && handshake !== null) {
      if (handshake.upgraded !== null) {
        this.#join(handshake, handshake.upgraded);
        if (message !== null) endExchange(message, this.socket.destroyed ? 'client-gone' : 'delivered', this.socket.destroyed ? null : 101, null, this.attempts);
      } else if (message !== null) endExchange(message, 'delivered', handshake.statusCode, null, this.attempts);
      return;
    }
    if (outcome.kind === 'delivered' || isClientAborted(this.cancelReason) || (outcome.kind === 'failed' && isClientAborted(outcome.error))) {
      if (message !== null) endExchange(message, 'client-gone', null, null, this.attempts);
      return;
    }
    reply(this.core, this.req, this.socket, this.requestId, this.path, failureOf(outcome), this.attempts, message, this.host?.origin ?? this.core.config.origin);
  }

  /** Joins the client and the upstream's socket after `101`; the slot is released when the tunnel ends. */
  #join(handshake: Handshake, upgraded: Upgraded): void {
    const { socket: client, head, tunnels } = this;
    this.#joined = true;
    this.core.upstream.tunnels += 1;
    if (client.destroyed) {
      upgraded.socket.destroy();
      this.#release(handshake);
      return;
    }
    client.write(`HTTP/1.1 101 Switching Protocols\r\n${headLines(upgraded.headers)}\r\n`);
    if (head.length > 0) upgraded.socket.write(head);
    const end = tunnel(client, upgraded.socket, this.core.config.timeout.tunnelIdle, () => {
      this.#release(handshake);
      tunnels.delete(end);
    });
    tunnels.add(end);
  }

  #release(handshake: Handshake): void {
    const { upstream } = this.core;
    upstream.inFlight -= 1;
    if (this.#joined) upstream.tunnels -= 1;
    handshake.host.active -= 1;
  }
}

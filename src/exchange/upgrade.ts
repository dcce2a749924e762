// WebSocket upgrades: the handshake is an attempt like any GET (a host of the
// group, the breaker, the concurrency limit, the connect and response timers,
// retries on another host when nothing reached the upstream), answered on the
// raw socket; after `101` the two sockets are joined into a tunnel that relays
// bytes both ways with backpressure, ends on `idle` silence, and destroys both
// sides when either leaves. Only `Upgrade: websocket` is forwarded.

import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { classifyError, type Phase } from '../contract/classify.js';
import { ClientAbortedError, isClientAborted, ProxyTimeoutError, RewriteHookError } from '../contract/errors.js';
import { FAILURES } from '../contract/failures.js';
import { sendProblemOnSocket } from '../contract/problem.js';
import type { FailureEvent, RetryEvent } from '../observe/hooks.js';
import { ownAttemptHeader } from '../policy/retry-options.js';
import { backoffDelay, isRetryable } from '../policy/retry-policy.js';
import type { Host } from '../upstream/group.js';
import { callHook, statusFor, type Failure, type ProxyCore } from './exchange.js';
import { clientResponseHeaders, requestId, upstreamRequestHeaders } from './headers.js';
import { settleHook } from './hook-time.js';
import type { ResponseSide } from './response-rewrite.js';
import { hookedRequestHeaders, patchHeaders, plainHeaders } from './rewrite.js';
import { upstreamPath } from './upstream-path.js';
import {
  attemptEnd,
  attemptMessage,
  attemptStart,
  budgetExhausted,
  endAttempt,
  endExchange,
  exchangeEnd,
  exchangeMessage,
  exchangeStart,
  refusalChannel,
  retryChannel,
  type AttemptMessage,
  type ExchangeMessage,
} from '../observe/channels.js';

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

type HandshakeOutcome =
  | { readonly kind: 'upgraded'; readonly headers: IncomingHttpHeaders; readonly socket: Duplex }
  | { readonly kind: 'relayed'; readonly statusCode: number }
  | { readonly kind: 'status'; readonly statusCode: number }
  | { readonly kind: 'failed'; readonly error: unknown; readonly phase: Phase };

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

/** One handshake with one host. Settles once. */
class Handshake implements Dispatcher.DispatchHandler {
  readonly #promise: Promise<HandshakeOutcome>;
  #resolve!: (outcome: HandshakeOutcome) => void;
  #settled = false;
  #phase: Phase = 'connect';
  #timer: NodeJS.Timeout | null = null;
  #controller: Dispatcher.DispatchController | null = null;
  #reason: Error | null = null;
  /** A non-101 answer being relayed to the client as it came (its status), or 0. */
  #relaying = 0;
  #discarding: number | null = null;

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

  start(): Promise<HandshakeOutcome> {
    this.#arm('connect');
    try {
      this.host.dispatcher.dispatch(
        { origin: this.host.origin, path: this.path, method: 'GET', headers: this.headers, upgrade: 'websocket', headersTimeout: 0, bodyTimeout: 0 },
        this,
      );
    } catch (error) {
      this.#settle({ kind: 'failed', error, phase: 'connect' });
    }
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
    this.#settle({ kind: 'upgraded', headers, socket });
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (this.#settled || statusCode < 200) return;
    if (this.core.config.failureStatuses.has(statusCode)) {
      // A failure status is the upstream's failure, like any GET's.
      this.#discarding = statusCode;
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
      this.#settle({ kind: 'status', statusCode: this.#discarding });
      return;
    }
    this.client.end();
    this.#settle({ kind: 'relayed', statusCode: this.#relaying });
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.#settled) return;
    if (this.#discarding !== null) {
      this.#settle({ kind: 'status', statusCode: this.#discarding });
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

  #settle(outcome: HandshakeOutcome): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#disarm();
    this.#resolve(outcome);
  }
}

/** Publishes the end of a handshake attempt. */
function endHandshake(message: AttemptMessage, outcome: HandshakeOutcome): void {
  if (outcome.kind === 'upgraded') endAttempt(message, 'delivered', 101, null, null);
  else if (outcome.kind === 'relayed') endAttempt(message, 'delivered', outcome.statusCode, null, null);
  else if (outcome.kind === 'status') endAttempt(message, 'status', outcome.statusCode, 'UPSTREAM_STATUS', null);
  else if (isClientAborted(outcome.error)) endAttempt(message, 'cancelled', null, null, outcome.error);
  else endAttempt(message, 'failed', null, classifyError(outcome.error, outcome.phase).code, outcome.error);
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
  /** Handshakes under way, aborted by close() like the tunnels. */
  readonly #handshakes = new Set<Handshake>();

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
    for (const handshake of [...this.#handshakes]) {
      handshake.client.destroy();
      handshake.abort(new ClientAbortedError());
    }
  }

  /** `path` is the path sent (or to be sent) upstream, '' before it is known; `target` the origin of the latest attempt's host: as for HTTP. */
  #reply(req: IncomingMessage, socket: Duplex, id: string, path: string, initial: Failure, attempts: number, message: ExchangeMessage | null, target = this.core.config.origin): void {
    const { config } = this.core;
    const { status, failure } = statusFor(config, initial);
    sendProblemOnSocket(req, socket, {
      code: failure.code,
      status,
      proxyStatus: failure.proxyStatus,
      receivedStatus: failure.receivedStatus,
      retryAfter: failure.retryAfter,
      upstream: config.name,
      attempts,
      requestId: id,
      proxyName: config.proxyName,
      requestIdHeader: config.requestIdHeader,
    });
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
    const invalid = (error: unknown = null): void =>
      this.#reply(req, socket, id, '', { code: 'REQUEST_INVALID', proxyStatus: 'http_request_error', phase: null, error, receivedStatus: null, retryAfter: null }, 0, begin(''));
    socket.on('error', () => socket.destroy());
    // h2c and the rest are request-smuggling vectors through proxies.
    if (!isWebSocketUpgrade(req) || req.method !== 'GET') {
      invalid();
      return;
    }
    const mountPath = options.mountPath ?? '';
    let url = req.url ?? '/';
    if (options.mountPath === undefined) this.#warnUnmounted(url);
    if (mountPath !== '') {
      if (url !== mountPath && !url.startsWith(`${mountPath}/`) && !url.startsWith(`${mountPath}?`)) {
        invalid();
        return;
      }
      url = url.slice(mountPath.length) || '/';
      if (url.startsWith('?')) url = `/${url}`;
    }
    let path: string | null;
    try {
      path = upstreamPath(config.basePath, config.pathRewrite === null ? url : config.pathRewrite(url, req));
    } catch (error) {
      this.#reply(req, socket, id, '', { code: 'PROXY_INTERNAL_ERROR', proxyStatus: 'proxy_internal_error', phase: null, error: new RewriteHookError('The `pathRewrite` function threw', { cause: error }), receivedStatus: null, retryAfter: null }, 0, begin(''));
      return;
    }
    if (path === null) {
      invalid();
      return;
    }
    const message = begin(path);
    const refused = upstream.breaker?.refusal() ?? null;
    if (refused !== null) {
      this.#refused(req, id, path, 'CIRCUIT_OPEN', 0);
      this.#reply(req, socket, id, path, { code: 'CIRCUIT_OPEN', proxyStatus: FAILURES.CIRCUIT_OPEN.proxyStatus, phase: null, error: null, receivedStatus: null, retryAfter: String(refused) }, 0, message);
      return;
    }
    // A discovered group before its first list (discovery never empties one later).
    if (upstream.group.hosts.length === 0) {
      this.#reply(req, socket, id, path, { code: 'UPSTREAM_DNS_FAILED', proxyStatus: 'dns_error', phase: null, error: new Error('No host discovered yet.'), receivedStatus: null, retryAfter: null }, 0, message);
      return;
    }
    let headers: Record<string, string | string[]>;
    try {
      headers = await this.#headers(req, id);
    } catch (error) {
      this.#reply(req, socket, id, path, { code: 'PROXY_INTERNAL_ERROR', proxyStatus: 'proxy_internal_error', phase: null, error, receivedStatus: null, retryAfter: null }, 0, message);
      return;
    }
    await this.#attempts(req, socket, head, id, path, headers, message, { req, mountPath, clientUrl: req.url ?? '/' });
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

  async #attempts(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    id: string,
    path: string,
    headers: Record<string, string | string[]>,
    message: ExchangeMessage | null,
    side: ResponseSide,
  ): Promise<void> {
    const { config, upstream } = this.core;
    const retries = config.retry?.retries ?? 0;
    let tried: Host[] | null = null;
    let last: HandshakeOutcome = { kind: 'failed', error: new ClientAbortedError(), phase: 'connect' };
    let attempts = 0;
    let gone = false;
    // A function, not the variable: it changes in a listener, between awaits.
    const clientGone = (): boolean => gone;
    const onGone = (): void => {
      gone = true;
      current?.abort(new ClientAbortedError());
    };
    let current: Handshake | null = null;
    const left = (): void => {
      if (message !== null) endExchange(message, 'client-gone', null, null, attempts);
    };
    socket.once('close', onGone);
    // timeout.total bounds the handshake with its retries, as it bounds a request.
    let expired: ProxyTimeoutError | null = null;
    // A function, not the variable: it changes in a timer, between awaits.
    const timedOut = (): ProxyTimeoutError | null => expired;
    // The origin of the latest attempt's host, for the failure event.
    let target = config.origin;
    const total = config.timeout.total;
    const deadline =
      total > 0
        ? setTimeout(() => {
            expired = new ProxyTimeoutError('total', total);
            current?.abort(expired);
          }, total)
        : null;
    try {
      for (let n = 1; n <= retries + 1; n += 1) {
        if (clientGone()) {
          left();
          return;
        }
        const reason = timedOut();
        if (reason !== null) {
          last = { kind: 'failed', error: reason, phase: 'connect' };
          break;
        }
        if (upstream.capacity !== null && upstream.inFlight >= upstream.capacity) {
          upstream.overloaded += 1;
          this.#refused(req, id, path, 'UPSTREAM_OVERLOADED', attempts);
          this.#reply(req, socket, id, path, { code: 'UPSTREAM_OVERLOADED', proxyStatus: FAILURES.UPSTREAM_OVERLOADED.proxyStatus, phase: null, error: null, receivedStatus: null, retryAfter: null }, attempts, message);
          return;
        }
        const host = upstream.group.pick(tried);
        target = host.origin;
        if (config.changeOrigin) headers.host = host.authority;
        const handshake: Handshake = new Handshake(host, path, headers, socket, this.core, side);
        current = handshake;
        this.#handshakes.add(handshake);
        attempts += 1;
        upstream.inFlight += 1;
        host.active += 1;
        let held = false;
        const run = async (): Promise<HandshakeOutcome> => {
          let attemptMsg: AttemptMessage | null = null;
          if (attemptStart.hasSubscribers || attemptEnd.hasSubscribers) {
            attemptMsg = attemptMessage(id, config.upstream, host.origin, 'GET', path, n, headers, true);
            if (attemptStart.hasSubscribers) attemptStart.publish(attemptMsg);
          }
          const outcome = await handshake.start();
          if (attemptMsg !== null) endHandshake(attemptMsg, outcome);
          return outcome;
        };
        const counts = (outcome: HandshakeOutcome): boolean =>
          outcome.kind === 'status' || (outcome.kind === 'failed' && !isClientAborted(outcome.error) && classifyError(outcome.error, outcome.phase).code !== 'PROXY_INTERNAL_ERROR');
        try {
          if (upstream.breaker === null) last = await run();
          else {
            const guarded = await upstream.breaker.run(run, counts);
            if (!guarded.ran) {
              this.#refused(req, id, path, 'CIRCUIT_OPEN', attempts - 1);
              this.#reply(req, socket, id, path, { code: 'CIRCUIT_OPEN', proxyStatus: FAILURES.CIRCUIT_OPEN.proxyStatus, phase: null, error: null, receivedStatus: null, retryAfter: String(guarded.retryAfterSeconds) }, attempts - 1, message, target);
              return;
            }
            last = guarded.outcome;
          }
          upstream.group.record(host, last.kind === 'failed' && isClientAborted(last.error) ? 'neutral' : counts(last) ? 'failure' : 'success', null);
          if (last.kind === 'upgraded') {
            held = true;
            this.#open101(socket, head, last, host);
            if (message !== null) endExchange(message, socket.destroyed ? 'client-gone' : 'delivered', socket.destroyed ? null : 101, null, attempts);
            return;
          }
        } finally {
          this.#handshakes.delete(handshake);
          if (!held) {
            upstream.inFlight -= 1;
            host.active -= 1;
          }
        }
        if (last.kind === 'relayed') {
          if (message !== null) endExchange(message, 'delivered', last.statusCode, null, attempts);
          return;
        }
        if (clientGone()) {
          left();
          return;
        }
        const code = last.kind === 'status' ? 'UPSTREAM_STATUS' : classifyError(last.error, last.phase).code;
        const phase = last.kind === 'status' ? 'response' : last.phase;
        if (n > retries || timedOut() !== null || !isRetryable(code, phase, true, code === 'UPSTREAM_RESPONSE_TIMEOUT' && upstream.group.hasUntried([...(tried ?? []), host]))) break;
        if (config.retry?.budget && !upstream.budget.allowsRetry()) {
          if (budgetExhausted.hasSubscribers) budgetExhausted.publish({ upstream: config.upstream, requestId: id, method: 'GET', path, code, attempt: n, upgrade: true });
          break;
        }
        (tried ??= []).push(host);
        const delay = config.retry === null ? 0 : backoffDelay(n, config.retry);
        if (retryChannel.hasSubscribers) {
          const classified = last.kind === 'status' ? null : classifyError(last.error, last.phase);
          const event: RetryEvent = {
            code,
            proxyStatus: classified === null ? null : classified.proxyStatus,
            phase,
            upstream: config.upstream,
            target: host.origin,
            requestId: id,
            method: 'GET',
            path,
            receivedStatus: last.kind === 'status' ? last.statusCode : null,
            error: last.kind === 'failed' ? last.error : null,
            upgrade: true,
            attempt: n,
            delay,
          };
          retryChannel.publish(event);
        }
        if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
      }
      if (clientGone()) {
        left();
        return;
      }
      if (last.kind === 'status') {
        this.#reply(req, socket, id, path, { code: 'UPSTREAM_STATUS', proxyStatus: null, phase: 'response', error: null, receivedStatus: last.statusCode, retryAfter: null }, attempts, message, target);
      } else if (!isClientAborted(last.error)) {
        const classified = classifyError(last.error, last.phase);
        this.#reply(req, socket, id, path, { ...classified, phase: last.phase, error: last.error, receivedStatus: null, retryAfter: null }, attempts, message, target);
      } else left();
    } finally {
      if (deadline !== null) clearTimeout(deadline);
      socket.off('close', onGone);
    }
  }

  #open101(client: Duplex, head: Buffer, outcome: Extract<HandshakeOutcome, { kind: 'upgraded' }>, host: Host): void {
    const { config, upstream } = this.core;
    const release = (): void => {
      upstream.inFlight -= 1;
      upstream.tunnels -= 1;
      host.active -= 1;
      this.#open.delete(end);
    };
    upstream.tunnels += 1;
    if (client.destroyed) {
      outcome.socket.destroy();
      release();
      return;
    }
    client.write(`HTTP/1.1 101 Switching Protocols\r\n${headLines(outcome.headers)}\r\n`);
    if (head.length > 0) outcome.socket.write(head);
    const end = tunnel(client, outcome.socket, config.timeout.tunnelIdle, release);
    this.#open.add(end);
  }
}

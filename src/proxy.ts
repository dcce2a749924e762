// createProxy: the public wiring. It validates the options, takes the
// upstream's shared state from the registry, and hands each request to an
// Exchange, which ends it with exactly one of: the upstream's complete
// response, the error contract, or (headers already sent) a destroyed client
// connection.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { createPool } from './exchange/attempt.js';
import type { ClientResponse } from './exchange/client-response.js';
import { callHook, Exchange, fromClassification, internalFailure, refusal, type Failure, type ForwardContext, type ProxyCore } from './exchange/exchange.js';
import { clientUrlOf, showClientUrl } from './exchange/client-url.js';
import { requestId } from './exchange/headers.js';
import { responseRewriter } from './exchange/response-rewrite.js';
import { rewritePath } from './exchange/rewrite.js';
import { asksForUpgrade, Upgrades, type UpgradeOptions } from './exchange/upgrade.js';
import { upstreamPath } from './exchange/upstream-path.js';
import { DEFAULTS, resolveOptions, type ProxyOptions, type ResolvedOptions } from './options.js';
import { resolveTargets, type StaticTarget } from './upstream/target-options.js';
import type { TargetSpec } from './upstream/group.js';
import { staleLayer } from './stale/layer.js';

export type { ForwardContext } from './exchange/exchange.js';
export type { UpgradeOptions } from './exchange/upgrade.js';
export type NextFunction = (error?: unknown) => void;

/** The proxy as adapters see it. */
export interface ProxyHandler {
  /** Settles when the proxy is done with the response: ended, answered with the contract, or cut. Never rejects. */
  handle(req: IncomingMessage, res: ClientResponse, context?: ForwardContext): Promise<void>;
  readonly upstream: string;
  setTargets(target: StaticTarget): void;
  /** Handles a server's `'upgrade'` event (WebSocket). Never throws or rejects. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, options?: UpgradeOptions): Promise<void>;
  close(): Promise<void>;
}

/** A request listener for `node:http` that is also an Express (4 and 5) middleware. */
export interface ResilientProxy {
  (req: IncomingMessage, res: ServerResponse, next?: NextFunction): void;
  /** The upstream's key: its name, or its origin(s). */
  readonly upstream: string;
  /**
   * Replaces the hosts of the group at run time (service discovery), in the
   * same shape as `target`. Requests in flight finish on their host; hosts
   * that stay keep their state; new ones start with slow start.
   */
  setTargets(target: StaticTarget): void;
  /**
   * Handles a server's `'upgrade'` event: `server.on('upgrade', (req, socket,
   * head) => proxy.upgrade(req, socket, head, { mountPath: '/api' }))`. Only
   * WebSocket is forwarded; the handshake runs under the timeouts, breaker and
   * host choice, a failure before `101` gets the error contract on the socket.
   */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, options?: UpgradeOptions): Promise<void>;
  /** Stops using the upstream's shared state; the last proxy of an upstream closes its pools (not a dispatcher you passed in) and health checks. */
  close(): Promise<void>;
}

const DONE = Promise.resolve();

/** No host to try: a discovered group whose source has not answered yet. */
function noHostsYet(): Failure {
  return { code: 'UPSTREAM_DNS_FAILED', proxyStatus: 'dns_error', phase: null, error: new Error('No host discovered yet.'), receivedStatus: null, retryAfter: null };
}

/** Where Express mounted the proxy (`req.baseUrl`), '' elsewhere. */
function mountPathOf(req: IncomingMessage): string {
  const baseUrl = (req as IncomingMessage & { baseUrl?: unknown }).baseUrl;
  return typeof baseUrl === 'string' ? baseUrl : '';
}

/** `pathRewrite` gets the path under the mount; its `req.url` is the target as the client sent it. */
function rewriteAsClientSent(rewrite: Parameters<typeof rewritePath>[0], path: string, req: IncomingMessage, clientUrl: string): string {
  const restore = showClientUrl(req, clientUrl);
  try {
    return rewritePath(rewrite, path, req);
  } finally {
    restore();
  }
}

/** The proxy without its listener shape, for adapters that pass more context. */
export function createProxyHandler(options: ProxyOptions): ProxyHandler {
  const config: ResolvedOptions = resolveOptions(options);
  /** A list of hosts, checked as `target` is, keeping the proxy's scheme and path prefix (fixed at construction). */
  const checkedTargets = (target: unknown): TargetSpec[] => {
    const { first, targets } = resolveTargets(target);
    if (first.protocol !== config.target.protocol || first.pathname.replace(/\/+$/, '') !== config.basePath) {
      throw new TypeError(`Expected \`target\` to keep the scheme and path prefix of the proxy (${config.target.protocol}//…${config.basePath}), got ${first.href}.`);
    }
    return targets;
  };
  const { discovery } = config;
  const upstream = config.registry.upstream(config.upstream, {
    targets: config.targets,
    budget: config.retry?.budget ?? DEFAULTS.retry.budget,
    breaker: config.breaker,
    adaptive: config.adaptiveConcurrency,
    hedge: config.hedge,
    group: {
      balance: config.balance,
      outlierDetection: config.outlierDetection,
      healthCheck: config.healthCheck,
      slowStart: config.slowStart,
      basePath: config.basePath,
      dispatcher: config.dispatcher,
      createPool: (origin) => createPool(origin, config.timeout),
    },
    discovery: discovery === null ? null : { ...discovery, toTargets: checkedTargets },
  });
  const core: ProxyCore = { config, upstream, rewrite: responseRewriter(config, upstream.group), stale: staleLayer(config) };
  const { breaker } = upstream;
  const stopBreaker = breaker?.onStateChange((change) => {
    callHook(config.hooks.onBreakerStateChange, change);
  });
  const { onHostStateChange, onPanic } = config.hooks;
  const stopHosts = onHostStateChange === undefined ? undefined : upstream.group.onStateChange((change) => callHook(onHostStateChange, change));
  const stopPanic = onPanic === undefined ? undefined : upstream.group.onPanic((change) => callHook(onPanic, change));
  const { onDiscovery } = config.hooks;
  const stopDiscovery = onDiscovery === undefined ? undefined : upstream.discovery?.onEvent((event) => callHook(onDiscovery, event));
  let closed: Promise<void> | null = null;
  const upgrades = new Upgrades(core);

  return {
    upstream: config.upstream,
    handle(req, res, context) {
      const id = context?.requestId === undefined ? requestId(req, config.requestIdHeader) : requestId(req, config.requestIdHeader, context.requestId);
      const mountPath = context?.mountPath ?? mountPathOf(req);
      if (mountPath !== '') upgrades.sawMount(mountPath);
      const asked = context?.url ?? req.url ?? '/';
      const clientUrl = clientUrlOf(req, context?.originalUrl);
      let path: string | null;
      try {
        path = upstreamPath(config.basePath, config.pathRewrite === null ? asked : rewriteAsClientSent(config.pathRewrite, asked, req, clientUrl));
      } catch (error) {
        new Exchange(core, req, res, id, '', mountPath, clientUrl).fail(internalFailure(error));
        return DONE;
      }
      const exchange = new Exchange(core, req, res, id, path ?? '', mountPath, clientUrl);
      // An upgrade reaches a request listener only when the server has no
      // 'upgrade' listener: forwarded as a plain request it would not upgrade.
      if (path === null || asksForUpgrade(req)) {
        exchange.fail(fromClassification({ code: 'REQUEST_INVALID', proxyStatus: 'http_request_error' }, null, null));
        return DONE;
      }
      // An open circuit is known at once: refuse before reading anything.
      const refused = breaker?.refusal() ?? null;
      if (refused !== null) {
        exchange.refused('CIRCUIT_OPEN');
        return exchange.failOrStale(refusal('CIRCUIT_OPEN', String(refused))) ?? DONE;
      }
      // A discovered group before its first list (discovery never empties one later).
      if (upstream.group.hosts.length === 0) return exchange.failOrStale(noHostsYet()) ?? DONE;
      return exchange.forward(context);
    },
    setTargets(target) {
      if (discovery !== null) {
        throw new TypeError(`Expected no \`setTargets\` call on a proxy whose hosts come from ${discovery.source}: the next refresh would undo it.`);
      }
      upstream.group.setTargets(checkedTargets(target));
    },
    upgrade(req, socket, head, options) {
      return upgrades.handle(req, socket, head, options).catch(() => {
        socket.destroy();
      });
    },
    close() {
      closed ??= (async () => {
        upgrades.closeAll();
        stopBreaker?.();
        stopHosts?.();
        stopPanic?.();
        stopDiscovery?.();
        await config.registry.release(upstream);
      })();
      return closed;
    },
  };
}

/**
 * Creates the proxy: a `(req, res, next?)` function that is both an Express
 * (4 and 5) middleware and a `node:http` request listener. Options are
 * validated here: a bad one throws a TypeError naming it.
 */
export function createProxy(options: ProxyOptions): ResilientProxy {
  const handler = createProxyHandler(options);
  const proxy = (req: IncomingMessage, res: ServerResponse): void => {
    void handler.handle(req, res);
  };
  return Object.assign(proxy, {
    upstream: handler.upstream,
    setTargets: (target: StaticTarget) => handler.setTargets(target),
    upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer, upgradeOptions?: UpgradeOptions) => handler.upgrade(req, socket, head, upgradeOptions),
    close: () => handler.close(),
  });
}

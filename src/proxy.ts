// createProxy: the request listener / Express middleware. It turns one client
// request into upstream attempts and answers every way that can end with
// exactly one of: the upstream's complete response, the error contract, or
// (headers already sent) a destroyed client connection.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { requestBody } from './exchange/body.js';
import { classifyError, type Classification, type Phase } from './contract/classify.js';
import { Attempt, createPool, type AttemptOutcome } from './exchange/attempt.js';
import { ClientAbortedError, isClientAborted, isProxyTimeout, LimitExceededError, ProxyTimeoutError } from './contract/errors.js';
import { FAILURES, type FailureCode, type ProxyStatusError } from './contract/failures.js';
import { requestId, upstreamRequestHeaders } from './exchange/headers.js';
import { DEFAULTS, resolveOptions, type ExchangeEvent, type FailureEvent, type ProxyOptions, type ResolvedOptions, type RetryEvent } from './options.js';
import { sendProblem } from './contract/problem.js';
import { runWithRetries } from './policy/retry.js';
import { backoffDelay, isRetryable, parseRetryAfter } from './policy/retry-policy.js';
import { upstreamPath } from './exchange/upstream-path.js';

export type NextFunction = (error?: unknown) => void;

/** What an adapter knows about a request that Node's request object does not carry. */
export interface ForwardContext {
  /** The request target to forward, when the framework mounted the proxy under a prefix it did not strip. */
  readonly url?: string;
  /** A body the framework's parser already read (`parsed`), and its raw text when kept. */
  readonly body?: { readonly parsed: unknown; readonly raw?: unknown };
}

/** The proxy as adapters see it. */
export interface ProxyHandler {
  handle(req: IncomingMessage, res: ServerResponse, context?: ForwardContext): void;
  readonly upstream: string;
  close(): Promise<void>;
}

/** A request listener for `node:http` that is also an Express (4 and 5) middleware. */
export interface ResilientProxy {
  (req: IncomingMessage, res: ServerResponse, next?: NextFunction): void;
  /** The upstream's key: its name, or its origin. */
  readonly upstream: string;
  /** Closes the proxy's own connection pool (not a dispatcher you passed in). */
  close(): Promise<void>;
}

interface Failure {
  readonly code: FailureCode;
  readonly proxyStatus: ProxyStatusError | null;
  readonly phase: Phase | null;
  readonly error: unknown;
  readonly receivedStatus: number | null;
  readonly retryAfter: string | null;
}

/** An attempt the proxy refused to make: the circuit is open, or the upstream is at capacity. */
interface Refused {
  readonly kind: 'refused';
  readonly code: 'CIRCUIT_OPEN' | 'UPSTREAM_OVERLOADED';
  readonly retryAfter: string | null;
}

type Outcome = AttemptOutcome | Refused;
type FailedOutcome = Exclude<Outcome, { kind: 'delivered' }>;

/** One client request and everything that may cancel it. */
class Exchange {
  attempts = 0;
  current: Attempt | null = null;
  cancelReason: Error | null = null;
  #sleep: AbortController | null = null;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly requestId: string,
    readonly path: string,
    readonly started: number,
  ) {}

  get method(): string {
    return this.req.method ?? 'GET';
  }

  /** Ends whatever is under way: the current attempt, or a backoff wait. */
  cancel(reason: Error): void {
    if (this.cancelReason !== null) return;
    this.cancelReason = reason;
    this.current?.abort(reason);
    this.#sleep?.abort(reason);
  }

  /** Created only when a retry waits, so the common path allocates no AbortController. */
  sleepSignal(): AbortSignal {
    this.#sleep ??= new AbortController();
    if (this.cancelReason !== null) this.#sleep.abort(this.cancelReason);
    return this.#sleep.signal;
  }
}

const HOOK_WARNED = new WeakSet<object>();

/** A client waiting for `100 Continue` that nobody has sent yet. */
function expectsContinue(req: IncomingMessage, res: ServerResponse): boolean {
  const expect = req.headers.expect;
  return typeof expect === 'string' && expect.toLowerCase() === '100-continue' && (res as ServerResponse & { _sent100?: boolean })._sent100 !== true;
}

/** Failures that say nothing about the upstream's health: the breaker ignores them. */
const NOT_THE_UPSTREAMS = new Set<FailureCode>(['PROXY_INTERNAL_ERROR', 'REQUEST_INVALID', 'REQUEST_TOO_LARGE']);

/** Hooks observe; one that throws must not break the request it observes. */
function callHook<T>(hook: ((event: T) => void) | undefined, event: T): void {
  if (hook === undefined) return;
  try {
    hook(event);
  } catch (error) {
    if (!HOOK_WARNED.has(hook)) {
      HOOK_WARNED.add(hook);
      process.emitWarning(`A resilient-proxy hook threw; it is ignored: ${String(error)}`, {
        code: 'RESILIENT_PROXY_HOOK_ERROR',
      });
    }
  }
}

function fromClassification(classification: Classification, phase: Phase | null, error: unknown): Failure {
  return { ...classification, phase, error, receivedStatus: null, retryAfter: null };
}

function retryAfterOf(outcome: Extract<FailedOutcome, { kind: 'status' }>): string | null {
  const value = outcome.headers['retry-after'];
  return typeof value === 'string' && /^[\x20-\x7e]{1,64}$/.test(value) ? value : null;
}

function failureOf(outcome: FailedOutcome): Failure {
  if (outcome.kind === 'refused') {
    return { code: outcome.code, proxyStatus: FAILURES[outcome.code].proxyStatus, phase: null, error: null, receivedStatus: null, retryAfter: outcome.retryAfter };
  }
  if (outcome.kind === 'status') {
    return {
      code: 'UPSTREAM_STATUS',
      proxyStatus: null,
      phase: 'response',
      error: null,
      receivedStatus: outcome.statusCode,
      retryAfter: retryAfterOf(outcome),
    };
  }
  return fromClassification(classifyError(outcome.error, outcome.phase), outcome.phase, outcome.error);
}

function internalFailure(error: unknown): Failure {
  return fromClassification({ code: 'PROXY_INTERNAL_ERROR', proxyStatus: 'proxy_internal_error' }, null, error);
}

/** The proxy without its listener shape, for adapters that pass more context. */
export function createProxyHandler(options: ProxyOptions): ProxyHandler {
  const config: ResolvedOptions = resolveOptions(options);
  const dispatcher = config.dispatcher ?? createPool(config.origin, config.timeout);
  const ownsDispatcher = config.dispatcher === null;
  const retry = config.retry;
  const upstreamState = config.registry.upstream(config.upstream, {
    origin: config.origin,
    budgetWindow: retry?.budget?.window ?? DEFAULTS.retry.budget.window,
    breaker: config.breaker,
  });
  const { breaker } = upstreamState;
  const stopObserving = breaker?.onStateChange((change) => {
    callHook(config.hooks.onBreakerStateChange, change);
  });

  /** What the breaker counts against the upstream: its failures, never a client's abort or the proxy's own fault. */
  function countsAgainstUpstream(outcome: AttemptOutcome): boolean {
    if (outcome.kind === 'delivered') return false;
    if (outcome.kind === 'status') return true;
    if (isClientAborted(outcome.error)) return false;
    const { code } = classifyError(outcome.error, outcome.phase);
    return !NOT_THE_UPSTREAMS.has(code);
  }

  function statusFor(failure: Failure): { status: number; failure: Failure } {
    // The client's own faults are answered as such, whatever `status` says.
    if (failure.code === 'REQUEST_INVALID' || failure.code === 'REQUEST_TOO_LARGE') return { status: FAILURES[failure.code].rfc9209Status, failure };
    if (typeof config.status === 'number') return { status: config.status, failure };
    try {
      const status = config.status(failure.code, failure.proxyStatus);
      if (Number.isInteger(status) && status >= 400 && status <= 599) return { status, failure };
      throw new TypeError(`The \`status\` option returned ${String(status)}, not an HTTP error status.`);
    } catch (error) {
      return { status: 500, failure: internalFailure(error) };
    }
  }

  function eventOf(exchange: Exchange, failure: Failure): ExchangeEvent {
    return {
      code: failure.code,
      proxyStatus: failure.proxyStatus,
      phase: failure.phase,
      upstream: config.upstream,
      target: config.origin,
      requestId: exchange.requestId,
      method: exchange.method,
      path: exchange.path,
      receivedStatus: failure.receivedStatus,
      error: failure.error,
    };
  }

  function report(exchange: Exchange, failure: Failure, statusCode: number | null): void {
    if (config.hooks.onFailure === undefined) return;
    const event: FailureEvent = { ...eventOf(exchange, failure), attempts: exchange.attempts, statusCode };
    callHook(config.hooks.onFailure, event);
  }

  function fail(exchange: Exchange, initial: Failure): void {
    const { res } = exchange;
    if (initial.phase === 'body' || res.headersSent) {
      if (!res.destroyed) res.destroy();
      report(exchange, initial.phase === 'body' ? initial : { ...initial, code: 'UPSTREAM_RESPONSE_INCOMPLETE' }, null);
      return;
    }
    const { status, failure } = statusFor(initial);
    if (!res.destroyed && !res.writableEnded) {
      sendProblem(exchange.req, res, {
        code: failure.code,
        status,
        proxyStatus: failure.proxyStatus,
        receivedStatus: failure.receivedStatus,
        retryAfter: failure.retryAfter,
        upstream: config.name,
        attempts: exchange.attempts,
        requestId: exchange.requestId,
        proxyName: config.proxyName,
        requestIdHeader: config.requestIdHeader,
      });
    }
    report(exchange, failure, status);
  }

  /** The wait before the next attempt, or null when this failure must not be retried. */
  function planRetry(exchange: Exchange, outcome: FailedOutcome, attempt: number): number | null {
    if (retry === null || exchange.cancelReason !== null || exchange.res.headersSent) return null;
    const failure = failureOf(outcome);
    let delay = backoffDelay(attempt, retry);
    const retryAfter = parseRetryAfter(failure.retryAfter);
    const total = config.timeout.total;
    const remaining = total > 0 ? total - (performance.now() - exchange.started) : Number.POSITIVE_INFINITY;
    if (retryAfter !== null) {
      // Honour the upstream's wish when the client can afford the wait;
      // otherwise fail now and pass its Retry-After on.
      if (retryAfter > (total > 0 ? remaining : retry.maxDelay)) return null;
      delay = retryAfter;
    }
    if (delay >= remaining) return null;
    if (retry.budget !== null && !upstreamState.budget.tryRetry(retry.budget)) return null;
    const event: RetryEvent = { ...eventOf(exchange, failure), attempt, delay };
    callHook(config.hooks.onRetry, event);
    return delay;
  }

  function isRetryCandidate(exchange: Exchange, outcome: Outcome): outcome is FailedOutcome {
    // A refusal ends the loop at once: an open circuit is not to be hammered.
    if (outcome.kind === 'delivered' || outcome.kind === 'refused') return false;
    if (outcome.kind === 'status') return isRetryable('UPSTREAM_STATUS', 'response', retry?.methods.has(exchange.method) === true);
    if (isClientAborted(outcome.error) || (isProxyTimeout(outcome.error) && outcome.error.timer === 'total')) return false;
    const { code } = classifyError(outcome.error, outcome.phase);
    return isRetryable(code, outcome.phase, retry?.methods.has(exchange.method) === true);
  }

  async function forward(exchange: Exchange, context: ForwardContext | undefined): Promise<void> {
    const { req, res } = exchange;
    const onClientClose = (): void => {
      if (!res.writableFinished) exchange.cancel(new ClientAbortedError());
    };
    res.once('close', onClientClose);
    let deadline: NodeJS.Timeout | null = null;
    try {
      const maxBody = config.limits.requestBodyBytes;
      if (maxBody > 0 && Number(req.headers['content-length']) > maxBody) {
        // The body will not be read: the connection cannot carry another request.
        if (!res.headersSent) res.setHeader('connection', 'close');
        fail(exchange, fromClassification(classifyError(new LimitExceededError('request', maxBody), 'connect'), null, null));
        return;
      }
      // Wired to the server's 'checkContinue' event, the proxy says `100
      // Continue` only once it means to read the body (a 413 or a refusal
      // comes first); otherwise Node already said it.
      if (expectsContinue(req, res)) res.writeContinue();
      const replayLimit = retry !== null && retry.retries > 0 ? retry.maxBodyBytes : null;
      const { body, rebuilt, replayable } = await requestBody(req, replayLimit, context?.body);
      if (exchange.cancelReason !== null) return;
      // Built when the first attempt really runs: a refusal needs none.
      let headers: Record<string, string | string[]> | null = null;
      const upstreamHeaders = (): Record<string, string | string[]> => {
        if (headers !== null) return headers;
        headers = upstreamRequestHeaders(req, {
          requestIdHeader: config.requestIdHeader,
          requestId: exchange.requestId,
          host: config.changeOrigin ? config.target.host : req.headers.host,
          trustProxy: config.trustProxy,
        });
        if (rebuilt && Buffer.isBuffer(body)) {
          headers['content-length'] = String(body.length);
          delete headers['content-encoding'];
        }
        return headers;
      };
      // The deadline starts once the body is in hand: a client's slow upload
      // is not the upstream's time.
      const total = config.timeout.total;
      if (total > 0) deadline = setTimeout(() => exchange.cancel(new ProxyTimeoutError('total', total)), total);
      if (retry?.budget) upstreamState.budget.recordRequest();

      const run = async (n: number): Promise<AttemptOutcome> => {
        const attemptHeaders = upstreamHeaders();
        // The object is this request's own, and undici serialises it during
        // dispatch(): the next attempt may overwrite the number.
        if (retry?.attemptHeader) attemptHeaders[retry.attemptHeader] = String(n);
        const attempt = new Attempt({
          dispatcher,
          origin: config.origin,
          path: exchange.path,
          method: exchange.method,
          headers: attemptHeaders,
          body,
          timeout: config.timeout,
          failureStatuses: config.failureStatuses,
          limits: config.limits,
          res,
        });
        exchange.current = attempt;
        exchange.attempts += 1;
        upstreamState.inFlight += 1;
        try {
          return await attempt.start();
        } finally {
          upstreamState.inFlight -= 1;
        }
      };

      const send = async (n: number): Promise<Outcome> => {
        if (exchange.cancelReason !== null) return { kind: 'failed', error: exchange.cancelReason, phase: 'connect' };
        if (upstreamState.capacity !== null && upstreamState.inFlight >= upstreamState.capacity) {
          upstreamState.overloaded += 1;
          return { kind: 'refused', code: 'UPSTREAM_OVERLOADED', retryAfter: null };
        }
        if (breaker === null) return run(n);
        const guarded = await breaker.run(() => run(n), countsAgainstUpstream);
        if (guarded.ran) return guarded.outcome;
        return { kind: 'refused', code: 'CIRCUIT_OPEN', retryAfter: String(guarded.retryAfterSeconds) };
      };

      const outcome =
        retry === null || retry.retries === 0 || !replayable
          ? await send(1)
          : await runWithRetries({
              retries: retry.retries,
              attempt: send,
              isCandidate: (o) => isRetryCandidate(exchange, o),
              plan: (o, n) => planRetry(exchange, o as FailedOutcome, n),
              signal: () => exchange.sleepSignal(),
            });
      exchange.current = null;

      if (outcome.kind === 'delivered') return;
      // A client that left is not an upstream failure: the attempt is
      // cancelled and nothing is reported or counted.
      if (isClientAborted(exchange.cancelReason) || (outcome.kind === 'failed' && isClientAborted(outcome.error))) return;
      fail(exchange, failureOf(outcome));
    } catch (error) {
      if (isClientAborted(error) || isClientAborted(exchange.cancelReason)) return;
      throw error;
    } finally {
      if (deadline !== null) clearTimeout(deadline);
      res.off('close', onClientClose);
    }
  }

  return {
    upstream: config.upstream,
    handle(req, res, context) {
      const path = upstreamPath(config.basePath, context?.url ?? req.url);
      const exchange = new Exchange(req, res, requestId(req, config.requestIdHeader), path ?? '', performance.now());
      if (path === null) {
        fail(exchange, fromClassification({ code: 'REQUEST_INVALID', proxyStatus: 'http_request_error' }, null, null));
        return;
      }
      // An open circuit is known at once: refuse before reading anything.
      const refused = breaker?.refusal() ?? null;
      if (refused !== null) {
        fail(exchange, failureOf({ kind: 'refused', code: 'CIRCUIT_OPEN', retryAfter: String(refused) }));
        return;
      }
      forward(exchange, context).catch((error: unknown) => {
        fail(exchange, internalFailure(error));
      });
    },
    async close() {
      stopObserving?.();
      if (ownsDispatcher) await dispatcher.close();
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
    handler.handle(req, res);
  };
  return Object.assign(proxy, { upstream: handler.upstream, close: () => handler.close() });
}

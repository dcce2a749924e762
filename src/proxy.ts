// createProxy: the request listener / Express middleware. It turns one client
// request into an upstream attempt and answers every way that can end with
// exactly one of: the upstream's complete response, the error contract, or
// (headers already sent) a destroyed client connection.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { classifyError, type Classification, type Phase } from './classify.js';
import { requestBody } from './body.js';
import { Attempt, createPool, type AttemptOutcome } from './engine.js';
import { ClientAbortedError, isClientAborted, ProxyTimeoutError } from './errors.js';
import type { FailureCode, ProxyStatusError } from './failures.js';
import { requestIdFor, upstreamRequestHeaders } from './headers.js';
import { resolveOptions, type FailureEvent, type ProxyOptions, type ResolvedOptions } from './options.js';
import { sendProblem } from './problem.js';
import { upstreamPath } from './upstream-path.js';

export type NextFunction = (error?: unknown) => void;

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

interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly requestId: string;
  readonly path: string;
  attempts: number;
}

const HOOK_WARNED = new WeakSet<object>();

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

function failureOf(outcome: Exclude<AttemptOutcome, { kind: 'delivered' }>): Failure {
  if (outcome.kind === 'status') {
    const retryAfter = outcome.headers['retry-after'];
    return {
      code: 'UPSTREAM_STATUS',
      proxyStatus: null,
      phase: 'response',
      error: null,
      receivedStatus: outcome.statusCode,
      retryAfter: typeof retryAfter === 'string' && /^[\x20-\x7e]{1,64}$/.test(retryAfter) ? retryAfter : null,
    };
  }
  return fromClassification(classifyError(outcome.error, outcome.phase), outcome.phase, outcome.error);
}

function internalFailure(error: unknown): Failure {
  return fromClassification({ code: 'PROXY_INTERNAL_ERROR', proxyStatus: 'proxy_internal_error' }, null, error);
}

export function createProxy(options: ProxyOptions): ResilientProxy {
  const config: ResolvedOptions = resolveOptions(options);
  const dispatcher = config.dispatcher ?? createPool(config.origin, config.timeout);
  const ownsDispatcher = config.dispatcher === null;

  function statusFor(failure: Failure): { status: number; failure: Failure } {
    if (failure.code === 'REQUEST_INVALID') return { status: 400, failure };
    if (typeof config.status === 'number') return { status: config.status, failure };
    try {
      const status = config.status(failure.code, failure.proxyStatus);
      if (Number.isInteger(status) && status >= 400 && status <= 599) return { status, failure };
      throw new TypeError(`The \`status\` option returned ${String(status)}, not an HTTP error status.`);
    } catch (error) {
      return { status: 500, failure: internalFailure(error) };
    }
  }

  function report(exchange: Exchange, failure: Failure, statusCode: number | null): void {
    const event: FailureEvent = {
      code: failure.code,
      proxyStatus: failure.proxyStatus,
      phase: failure.phase,
      upstream: config.upstream,
      target: config.origin,
      requestId: exchange.requestId,
      method: exchange.req.method ?? 'GET',
      path: exchange.path,
      attempts: exchange.attempts,
      statusCode,
      receivedStatus: failure.receivedStatus,
      error: failure.error,
    };
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

  async function forward(exchange: Exchange): Promise<void> {
    const { req, res } = exchange;
    const { body, rebuilt } = requestBody(req);
    const headers = upstreamRequestHeaders(req, {
      requestIdHeader: config.requestIdHeader,
      requestId: exchange.requestId,
      host: config.changeOrigin ? config.target.host : req.headers.host,
    });
    if (rebuilt && Buffer.isBuffer(body)) {
      headers['content-length'] = String(body.length);
      delete headers['content-encoding'];
    }

    const attempt = new Attempt({
      dispatcher,
      origin: config.origin,
      path: exchange.path,
      method: req.method ?? 'GET',
      headers,
      body,
      timeout: config.timeout,
      failureStatuses: config.failureStatuses,
      res,
    });
    const onClientClose = (): void => {
      if (!res.writableFinished) attempt.abort(new ClientAbortedError());
    };
    res.once('close', onClientClose);
    const total = config.timeout.total;
    const deadline =
      total > 0 ? setTimeout(() => attempt.abort(new ProxyTimeoutError('total', total)), total) : null;

    exchange.attempts += 1;
    const outcome = await attempt.start();
    if (deadline !== null) clearTimeout(deadline);
    res.off('close', onClientClose);

    if (outcome.kind === 'delivered') return;
    // A client that left is not an upstream failure: the attempt is cancelled
    // and nothing is reported or counted.
    if (outcome.kind === 'failed' && isClientAborted(outcome.error)) return;
    fail(exchange, failureOf(outcome));
  }

  const proxy = (req: IncomingMessage, res: ServerResponse): void => {
    const path = upstreamPath(config.basePath, req.url);
    const exchange: Exchange = {
      req,
      res,
      requestId: requestIdFor(req, config.requestIdHeader),
      path: path ?? '',
      attempts: 0,
    };
    if (path === null) {
      fail(exchange, fromClassification({ code: 'REQUEST_INVALID', proxyStatus: 'http_request_error' }, null, null));
      return;
    }
    forward(exchange).catch((error: unknown) => {
      fail(exchange, internalFailure(error));
    });
  };

  return Object.assign(proxy, {
    upstream: config.upstream,
    close: async (): Promise<void> => {
      if (ownsDispatcher) await dispatcher.close();
    },
  });
}

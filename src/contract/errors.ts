// Errors the proxy raises itself. Each carries a stable `code` so that the
// classifier never needs to look at a message, and guards check the code
// rather than `instanceof` (two copies of the package may be loaded at once).

/** Which of the proxy's own timers ended an attempt (`upload`: the client stopped sending its body). */
export type TimerKind = 'connect' | 'response' | 'idle' | 'total' | 'upload';

export const TIMEOUT_CODE = 'ERR_RESILIENT_PROXY_TIMEOUT';
export const CLIENT_ABORTED_CODE = 'ERR_RESILIENT_PROXY_CLIENT_ABORTED';
export const BODY_NOT_REPLAYABLE_CODE = 'ERR_RESILIENT_PROXY_BODY_CONSUMED';
export const LIMIT_EXCEEDED_CODE = 'ERR_RESILIENT_PROXY_LIMIT_EXCEEDED';
export const HOOK_ERROR_CODE = 'ERR_RESILIENT_PROXY_HOOK';

/** Raised when one of the per-phase timers (or the total deadline) fires. */
export class ProxyTimeoutError extends Error {
  readonly code = TIMEOUT_CODE;
  readonly timer: TimerKind;

  constructor(timer: TimerKind, ms: number) {
    super(`The ${timer} timeout of ${ms} ms elapsed`);
    this.name = 'ProxyTimeoutError';
    this.timer = timer;
  }
}

/** The reason the upstream request is cancelled when the client goes away. */
export class ClientAbortedError extends Error {
  readonly code = CLIENT_ABORTED_CODE;

  constructor() {
    super('The client closed the connection before the response was complete');
    this.name = 'ClientAbortedError';
  }
}

/** A body went over one of the `limits`. */
export class LimitExceededError extends Error {
  readonly code = LIMIT_EXCEEDED_CODE;
  readonly body: 'request' | 'response';

  constructor(body: 'request' | 'response', limit: number) {
    super(`The ${body} body is larger than the limit of ${limit} bytes`);
    this.name = 'LimitExceededError';
    this.body = body;
  }
}

/** A request body was read by a body parser and cannot be rebuilt. */
export class BodyNotReplayableError extends Error {
  readonly code = BODY_NOT_REPLAYABLE_CODE;

  constructor(contentType: string) {
    super(
      `The request body (${contentType || 'no content-type'}) was already consumed by a body parser and cannot be forwarded. ` +
        'Mount the proxy before the body parser, or parse only the routes that are not proxied.',
    );
    this.name = 'BodyNotReplayableError';
  }
}

/** A rewrite option's function threw, rejected, or returned something that cannot be sent: the user's code, not the upstream. */
export class RewriteHookError extends Error {
  readonly code = HOOK_ERROR_CODE;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RewriteHookError';
  }
}

export function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && code !== '') return code;
  // autoSelectFamily raises an AggregateError whose own code may be missing;
  // the first inner error names the real cause.
  const inner = (error as { errors?: unknown }).errors;
  if (Array.isArray(inner) && inner.length > 0) return errorCode(inner[0]);
  return undefined;
}

export function isProxyTimeout(error: unknown): error is ProxyTimeoutError {
  return errorCode(error) === TIMEOUT_CODE;
}

export function isLimitExceeded(error: unknown): error is LimitExceededError {
  return errorCode(error) === LIMIT_EXCEEDED_CODE;
}

export function isClientAborted(error: unknown): error is ClientAbortedError {
  return errorCode(error) === CLIENT_ABORTED_CODE;
}

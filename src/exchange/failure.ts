// What an attempt's outcome means for the rest of the proxy: the failure the
// client is answered with, what the breaker and outlier detection count, and
// what the diagnostics channels publish. Pure functions of the outcome.

import { classifyError, type Classification, type Phase } from '../contract/classify.js';
import { isClientAborted } from '../contract/errors.js';
import { isHedgeLost } from './hedge-race.js';
import { FAILURES, type FailureCode, type ProxyStatusError } from '../contract/failures.js';
import type { ProblemInput } from '../contract/problem.js';
import type { ResolvedOptions } from '../options.js';
import { parseRetryAfter } from '../policy/retry-policy.js';
import type { AttemptFailure } from '../upstream/group.js';
import { endAttempt, type AttemptMessage } from '../observe/channels.js';
import type { AttemptOutcome } from './attempt.js';

export interface Failure {
  readonly code: FailureCode;
  readonly proxyStatus: ProxyStatusError | null;
  readonly phase: Phase | null;
  readonly error: unknown;
  readonly receivedStatus: number | null;
  readonly retryAfter: string | null;
}

/** An attempt the proxy refused to make: the circuit is open, or the upstream is at capacity. */
export interface Refused {
  readonly kind: 'refused';
  readonly code: 'CIRCUIT_OPEN' | 'UPSTREAM_OVERLOADED';
  readonly retryAfter: string | null;
}

export type Outcome = AttemptOutcome | Refused;
export type FailedOutcome = Exclude<Outcome, { kind: 'delivered' }>;

/** Failures that say nothing about the upstream's health: the breaker and outlier detection ignore them. */
const NOT_THE_UPSTREAMS = new Set<FailureCode>(['PROXY_INTERNAL_ERROR', 'REQUEST_INVALID', 'REQUEST_TOO_LARGE', 'REQUEST_TIMEOUT']);

/** The client's own faults: answered with their own status, whatever `status` says. */
export const CLIENT_FAULTS: ReadonlySet<FailureCode> = new Set<FailureCode>(['REQUEST_INVALID', 'REQUEST_TOO_LARGE', 'REQUEST_TIMEOUT']);

export function fromClassification(classification: Classification, phase: Phase | null, error: unknown): Failure {
  return { ...classification, phase, error, receivedStatus: null, retryAfter: null };
}

/** The upstream's Retry-After as whole seconds, or `null`: only a value that parses is used or passed on (never the upstream's text). */
function retryAfterOf(outcome: Extract<FailedOutcome, { kind: 'status' }>): string | null {
  const value = outcome.headers['retry-after'];
  const ms = typeof value === 'string' ? parseRetryAfter(value) : null;
  return ms === null ? null : String(Math.ceil(ms / 1000));
}

export function refusal(code: Refused['code'], retryAfter: string | null): Failure {
  return { code, proxyStatus: FAILURES[code].proxyStatus, phase: null, error: null, receivedStatus: null, retryAfter };
}

export function failureOf(outcome: FailedOutcome): Failure {
  if (outcome.kind === 'refused') return refusal(outcome.code, outcome.retryAfter);
  if (outcome.kind === 'status') {
    return { code: 'UPSTREAM_STATUS', proxyStatus: null, phase: 'response', error: null, receivedStatus: outcome.statusCode, retryAfter: retryAfterOf(outcome) };
  }
  return fromClassification(classifyError(outcome.error, outcome.phase), outcome.phase, outcome.error);
}

export function internalFailure(error: unknown): Failure {
  return fromClassification({ code: 'PROXY_INTERNAL_ERROR', proxyStatus: 'proxy_internal_error' }, null, error);
}

/** The status a failure is answered with, by the `status` option; a `status` function that throws or answers nonsense is the proxy's own fault (500). */
export function statusFor(config: ResolvedOptions, failure: Failure): { status: number; failure: Failure } {
  // The client's own faults are answered as such, whatever `status` says.
  if (CLIENT_FAULTS.has(failure.code)) return { status: FAILURES[failure.code].rfc9209Status, failure };
  if (typeof config.status === 'number') return { status: config.status, failure };
  try {
    const status = config.status(failure.code, failure.proxyStatus);
    if (Number.isInteger(status) && status >= 400 && status <= 599) return { status, failure };
    throw new TypeError(`The \`status\` option returned ${String(status)}, not an HTTP error status.`);
  } catch (error) {
    return { status: 500, failure: internalFailure(error) };
  }
}

/** The error contract's fields for a failure answered with `status`: the same for a request and a handshake. */
export function problemInput(config: ResolvedOptions, failure: Failure, status: number, attempts: number, requestId: string): ProblemInput {
  return {
    code: failure.code,
    status,
    proxyStatus: failure.proxyStatus,
    receivedStatus: failure.receivedStatus,
    retryAfter: failure.retryAfter,
    upstream: config.name,
    attempts,
    requestId,
    proxyName: config.proxyName,
    requestIdHeader: config.requestIdHeader,
  };
}

/** What the breaker and outlier detection count against the upstream: its failures, never a client's abort or the proxy's own fault. */
export function countsAgainstUpstream(outcome: AttemptOutcome): boolean {
  if (outcome.kind === 'delivered') return false;
  if (outcome.kind === 'status') return true;
  if (isClientAborted(outcome.error) || isHedgeLost(outcome.error)) return false;
  const { code } = classifyError(outcome.error, outcome.phase);
  return !NOT_THE_UPSTREAMS.has(code);
}

/** An attempt ended from outside: the client left, or (hedging) another attempt's head won. It says nothing about the host. */
export function cancelledAttempt(outcome: AttemptOutcome): boolean {
  return outcome.kind === 'failed' && (isClientAborted(outcome.error) || isHedgeLost(outcome.error));
}

/** What the breaker counts of a whole request: a refusal is the breaker's own doing, never a failure. */
export function countsAgainstBreaker(outcome: Outcome): boolean {
  return outcome.kind !== 'refused' && countsAgainstUpstream(outcome);
}

/** What outlier detection learns from a failed attempt: its class, and the host's own Retry-After. */
export function attemptFailure(outcome: AttemptOutcome): AttemptFailure | null {
  if (outcome.kind === 'delivered') return null;
  if (outcome.kind === 'status') return { code: 'UPSTREAM_STATUS', retryAfter: parseRetryAfter(retryAfterOf(outcome)) };
  return { code: classifyError(outcome.error, outcome.phase).code, retryAfter: null };
}

/** Publishes the end of an attempt with what its outcome says (classified only for a subscriber). */
export function endAttemptOf(message: AttemptMessage, outcome: AttemptOutcome | null, statusCode: number): void {
  const status = statusCode === 0 ? null : statusCode;
  if (outcome === null) endAttempt(message, 'failed', status, 'PROXY_INTERNAL_ERROR', null);
  else if (outcome.kind === 'delivered') endAttempt(message, 'delivered', status, null, null);
  else if (outcome.kind === 'status') endAttempt(message, 'status', outcome.statusCode, 'UPSTREAM_STATUS', null);
  else if (isClientAborted(outcome.error) || isHedgeLost(outcome.error)) endAttempt(message, 'cancelled', status, null, outcome.error);
  else endAttempt(message, 'failed', status, classifyError(outcome.error, outcome.phase).code, outcome.error);
}

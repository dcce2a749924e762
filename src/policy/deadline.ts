// Deadline propagation: each attempt tells the upstream how long the proxy
// will still wait for it (what is left of `timeout.total`, minus a safety
// margin), in milliseconds or in gRPC's `grpc-timeout` form, so an upstream
// can give up on work nobody will read; a client's own deadline, in the same
// header, caps `timeout.total` when the client is trusted (Envoy honours
// `x-envoy-expected-rq-timeout-ms` only from trusted peers: a client could
// otherwise shorten, or with a huge value claim, any budget). DESIGN.md §20.

import type { IncomingHttpHeaders } from 'node:http';

/** Deadline propagation's settings. */
export interface DeadlineOptions {
  /** The header that carries the deadline, upstream and (when trusted) from the client. Default `'x-request-timeout-ms'`, or `'grpc-timeout'` with `format: 'grpc'`. */
  header: string;
  /** `'ms'`: whole milliseconds (`1990`); `'grpc'`: gRPC's form, at most 8 digits and a unit H M S m u n (`1990m`). Default `'ms'`. */
  format: 'ms' | 'grpc';
  /** Milliseconds taken off what is sent, for the time the request and its answer spend between the proxy and the upstream. Default `10`. */
  margin: number;
  /** The least time, in ms, an attempt must be able to tell the upstream (remaining − margin); with less left it is not started and the request fails as a total timeout. Default `10`. */
  minimum: number;
  /** Honour the deadline a client sends in `header`, capping `timeout.total` for that request. Default `false`: it is replaced by the proxy's own. */
  trustClient: boolean;
}

export const DEADLINE_DEFAULTS = Object.freeze({ header: 'x-request-timeout-ms', grpcHeader: 'grpc-timeout', format: 'ms', margin: 10, minimum: 10, trustClient: false } as const);

/** Milliseconds per unit of `grpc-timeout`. */
const GRPC_UNITS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };
/** gRPC allows at most 8 digits. */
const GRPC_MAX = 99_999_999;
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** The header value for `ms` milliseconds (whole, at least 0). */
export function formatDeadline(ms: number, format: DeadlineOptions['format']): string {
  const whole = Math.max(0, Math.floor(ms));
  if (format === 'ms') return String(whole);
  // The finest unit whose count fits in 8 digits, rounded down: never promise more time than there is.
  for (const [unit, size] of [['m', 1], ['S', 1000], ['M', 60_000]] as const) {
    const count = Math.floor(whole / size);
    if (count <= GRPC_MAX) return `${count}${unit}`;
  }
  return `${Math.min(GRPC_MAX, Math.floor(whole / 3_600_000))}H`;
}

/** The client's deadline in ms, or `null` when it sent none or a malformed one. */
export function parseDeadline(value: string | string[] | undefined, format: DeadlineOptions['format']): number | null {
  if (typeof value !== 'string') return null;
  if (format === 'ms') return /^\d{1,10}$/.test(value) ? Number(value) : null;
  const match = /^(\d{1,8})([HMSmun])$/.exec(value);
  return match === null ? null : Number(match[1]) * (GRPC_UNITS[match[2] ?? ''] ?? 0);
}

/** `timeout.total` for one request: the configured one, capped by a trusted client's deadline (0 stays "none" only when neither has one). */
export function requestTotal(total: number, headers: IncomingHttpHeaders, options: Readonly<DeadlineOptions> | null): number {
  if (options === null || !options.trustClient) return total;
  const client = parseDeadline(headers[options.header], options.format);
  if (client === null) return total;
  // A deadline already past is still a deadline: 1 ms, not 0 (which means none).
  const capped = Math.max(1, Math.ceil(client));
  return total > 0 ? Math.min(total, capped) : capped;
}

/** Whether an attempt may start with `remaining` ms left: it can tell the upstream at least `minimum` ms. */
export function timeForAttempt(remaining: number, options: Readonly<DeadlineOptions>): boolean {
  return remaining - options.margin >= options.minimum;
}

function fail(option: string, expected: string, value: unknown): never {
  const shown = typeof value === 'string' ? `the string ${JSON.stringify(value)}` : typeof value === 'object' && value !== null ? 'an object' : String(value);
  throw new TypeError(`Expected \`${option}\` to be ${expected}, got ${shown}.`);
}

/** The `deadline` option: `true` for the defaults, an object to change some, `false`/absent for none. `total` is the resolved `timeout.total`. */
export function resolveDeadline(value: unknown, total: number): Readonly<DeadlineOptions> | null {
  if (value === undefined || value === false) return null;
  const given: Record<string, unknown> = value === true ? {} : (value as Record<string, unknown>);
  if (value !== true && (typeof value !== 'object' || value === null || Array.isArray(value))) fail('deadline', 'a boolean or an object like { header, format }', value);
  const known = ['header', 'format', 'margin', 'minimum', 'trustClient'];
  for (const key of Object.keys(given)) {
    if (!known.includes(key)) throw new TypeError(`Unknown option \`deadline.${key}\`. Known options: ${known.join(', ')}.`);
  }
  const format = given.format ?? DEADLINE_DEFAULTS.format;
  if (format !== 'ms' && format !== 'grpc') fail('deadline.format', "'ms' or 'grpc'", format);
  const header = given.header ?? (format === 'grpc' ? DEADLINE_DEFAULTS.grpcHeader : DEADLINE_DEFAULTS.header);
  if (typeof header !== 'string' || !HEADER_NAME.test(header)) fail('deadline.header', 'a header name', header);
  const ms = (option: string, v: unknown, fallback: number): number => {
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 60_000) fail(`deadline.${option}`, 'a number of milliseconds from 0 to 60000', v);
    return v;
  };
  const trustClient = given.trustClient ?? DEADLINE_DEFAULTS.trustClient;
  if (typeof trustClient !== 'boolean') fail('deadline.trustClient', 'a boolean', trustClient);
  if (total === 0 && !trustClient) {
    throw new TypeError('Expected `timeout.total` to be set with `deadline`: the deadline sent upstream is what remains of it, and without it (and without `deadline.trustClient`) there is none to send.');
  }
  return Object.freeze({
    header: header.toLowerCase(),
    format,
    margin: ms('margin', given.margin, DEADLINE_DEFAULTS.margin),
    minimum: ms('minimum', given.minimum, DEADLINE_DEFAULTS.minimum),
    trustClient,
  });
}

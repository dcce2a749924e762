// The `timeout` option: a time limit per phase of an exchange, its defaults
// and its check.

import { MIGRATION_GUIDE, TIMEOUT_NUMBER_HINT } from '../migration.js';
import { checkKeys, duration, fail, isPlainObject } from '../option-checks.js';

/** Per-phase time limits, in milliseconds. `0` turns a timer off. */
export interface TimeoutOptions {
  /**
   * DNS lookup, TCP connect and TLS handshake together, until the request can
   * be written. Default `5000` ms: enough for two lost SYNs (retransmitted at
   * 1 s and 3 s), far above any healthy connect.
   */
  connect: number;
  /**
   * From the moment the request is fully sent until the response headers
   * arrive; for a response read whole for `transformResponse`, also from its
   * headers to its last byte (the client has received nothing meanwhile).
   * Default `30000` ms.
   */
  response: number;
  /**
   * The longest gap between two pieces of the response body, the first one
   * included (and, while uploading, the longest time the upstream may refuse
   * to read the request body). Time the client spends not reading is not
   * counted. A response head waits at most 100 ms for its first body byte
   * before it goes to the client; past that a late body ends in a cut
   * connection, within it in `UPSTREAM_RESPONSE_TIMEOUT`. Default `30000` ms.
   */
  idle: number;
  /**
   * A deadline for the whole exchange, from the moment the request body is in
   * the proxy's hands until the response is complete: at arrival for a
   * request without a body, once the body or its first
   * `limits.requestBufferBytes` arrived for one with a body (a slow upload is
   * not the upstream's time). Default `0` (none): per-phase timers already bound
   * every wait, and a deadline would cut long downloads.
   */
  total: number;
  /**
   * The longest wait for a user function the request depends on: an async
   * `headers.request` hook, and a `transformResponse` (decode, transform and
   * encode). One that has not settled by then ends the request with the
   * contract, code `PROXY_INTERNAL_ERROR`: the upstream is not blamed, and
   * the breaker does not count it. Default `10000` ms; `0` waits for ever.
   */
  hook: number;
  /**
   * The longest gap, in ms, between two pieces of the request body the client
   * sends (counted only while the proxy is reading: time the upstream spends
   * not reading is not the client's). Past it: `408` with `REQUEST_TIMEOUT`
   * (or, once the response has started, a cut connection); never retried,
   * never counted against the upstream. Default `30000` ms, the proxy's own
   * `idle` (Apache's `RequestReadTimeout` body default is 20 s, nginx's
   * `client_body_timeout` 60 s; Node's `requestTimeout` of 300 s would hold a
   * stalled upload for five minutes). `0` turns it off.
   */
  upload: number;
  /**
   * The longest silence, in either direction, of a WebSocket tunnel after
   * `101` before both sides are closed. Default: `idle`. `0` turns it off.
   */
  tunnelIdle?: number;
}

export const TIMEOUT_DEFAULTS = Object.freeze({ connect: 5_000, response: 30_000, idle: 30_000, total: 0, hook: 10_000, upload: 30_000 });

/** Every limit set; `tunnelIdle` defaults to `idle`. */
export type ResolvedTimeouts = TimeoutOptions & { tunnelIdle: number };

export function resolveTimeouts(value: unknown): ResolvedTimeouts {
  if (value === undefined) return { ...TIMEOUT_DEFAULTS, tunnelIdle: TIMEOUT_DEFAULTS.idle };
  if (typeof value === 'number') throw new TypeError(`Expected \`timeout\` to be an object like { connect, response, idle, total }, got ${value} → here: ${TIMEOUT_NUMBER_HINT}. See the migration guide (${MIGRATION_GUIDE}).`);
  if (!isPlainObject(value)) fail('timeout', 'an object like { connect, response, idle, total }', value);
  checkKeys('timeout', value, ['connect', 'response', 'idle', 'total', 'hook', 'upload', 'tunnelIdle']);
  const idle = duration('timeout.idle', value.idle, TIMEOUT_DEFAULTS.idle);
  return {
    connect: duration('timeout.connect', value.connect, TIMEOUT_DEFAULTS.connect),
    response: duration('timeout.response', value.response, TIMEOUT_DEFAULTS.response),
    idle,
    total: duration('timeout.total', value.total, TIMEOUT_DEFAULTS.total),
    hook: duration('timeout.hook', value.hook, TIMEOUT_DEFAULTS.hook),
    upload: duration('timeout.upload', value.upload, TIMEOUT_DEFAULTS.upload),
    tunnelIdle: duration('timeout.tunnelIdle', value.tunnelIdle, idle),
  };
}

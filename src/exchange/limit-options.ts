// The `limits` option: body sizes the proxy forwards and buffers, their
// defaults and their check.

import { checkKeys, fail, isPlainObject, positive } from '../option-checks.js';

/** Body size limits, in bytes. `0` turns a limit off. */
export interface LimitOptions {
  /**
   * The largest request body forwarded. Over it: `413` with `REQUEST_TOO_LARGE`
   * (at once when `Content-Length` says so, else when the stream passes it).
   * Default `0` (none): uploads stream whatever their size.
   */
  requestBodyBytes: number;
  /**
   * The largest response body passed on. Over it: `UPSTREAM_BAD_RESPONSE`
   * (`http_response_body_size`) when `Content-Length` says so, else the client
   * connection is cut. Default `0` (none).
   */
  responseBodyBytes: number;
  /**
   * How much of a request body is read into memory before the upstream is
   * called, as nginx buffers request bodies: a body that ends within it goes
   * upstream in one piece, so a slow upload holds no upstream connection and
   * no `breaker.capacity` slot while it arrives; a longer one streams on from
   * there. Default `1048576` (1 MiB: nginx's default `client_max_body_size`,
   * the largest body it buffers by default; the same bound as
   * `retry.maxBodyBytes`). `0` streams every body at once (for request bodies
   * that must reach the upstream as they are sent).
   */
  requestBufferBytes: number;
}

export const LIMIT_DEFAULTS = Object.freeze({ requestBodyBytes: 0, responseBodyBytes: 0, requestBufferBytes: 1024 * 1024 });

export function resolveLimits(value: unknown): LimitOptions {
  const defaults = LIMIT_DEFAULTS;
  if (value === undefined) return { ...defaults };
  if (!isPlainObject(value)) fail('limits', 'an object like { requestBodyBytes, responseBodyBytes }', value);
  checkKeys('limits', value, ['requestBodyBytes', 'responseBodyBytes', 'requestBufferBytes']);
  const bytes = (n: number): boolean => Number.isSafeInteger(n) && n >= 0;
  const expected = 'a whole number of bytes (0 for no limit)';
  return {
    requestBodyBytes: positive('limits.requestBodyBytes', value.requestBodyBytes, defaults.requestBodyBytes, expected, bytes),
    responseBodyBytes: positive('limits.responseBodyBytes', value.responseBodyBytes, defaults.responseBodyBytes, expected, bytes),
    requestBufferBytes: positive('limits.requestBufferBytes', value.requestBufferBytes, defaults.requestBufferBytes, 'a whole number of bytes (0 to stream at once)', bytes),
  };
}

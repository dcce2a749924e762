// The public, stable failure codes and everything the error contract says about
// each: the RFC 9209 Proxy-Status error type, the fixed sentence clients see,
// and the status RFC 9209 recommends. One table, so the contract cannot drift.

/** Every failure the proxy can report. These codes are public and stable. */
export const FAILURE_CODES = [
  'UPSTREAM_DNS_FAILED',
  'UPSTREAM_UNREACHABLE',
  'UPSTREAM_CONNECT_REFUSED',
  'UPSTREAM_CONNECT_TIMEOUT',
  'UPSTREAM_TLS_FAILED',
  'UPSTREAM_RESET',
  'UPSTREAM_RESPONSE_TIMEOUT',
  'UPSTREAM_BAD_RESPONSE',
  'UPSTREAM_STATUS',
  'CIRCUIT_OPEN',
  'UPSTREAM_OVERLOADED',
  'UPSTREAM_RESPONSE_INCOMPLETE',
  'PROXY_INTERNAL_ERROR',
  'REQUEST_INVALID',
  'REQUEST_TOO_LARGE',
  'REQUEST_TIMEOUT',
] as const;

export type FailureCode = (typeof FAILURE_CODES)[number];

/** Whether `code` is one of the public failure codes (for users' own guards). */
export function isFailureCode(code: unknown): code is FailureCode {
  return typeof code === 'string' && (FAILURE_CODES as readonly string[]).includes(code);
}

/** RFC 9209 §2.3 proxy error types used by this library. */
export type ProxyStatusError =
  | 'dns_error'
  | 'dns_timeout'
  | 'destination_ip_unroutable'
  | 'destination_ip_prohibited'
  | 'connection_refused'
  | 'connection_timeout'
  | 'tls_certificate_error'
  | 'tls_protocol_error'
  | 'connection_terminated'
  | 'http_response_timeout'
  | 'http_protocol_error'
  | 'http_response_header_section_size'
  | 'http_response_body_size'
  | 'destination_unavailable'
  | 'connection_limit_reached'
  | 'http_response_incomplete'
  | 'connection_read_timeout'
  | 'proxy_internal_error'
  | 'http_request_error';

interface FailureDescription {
  /** The fixed sentence put in `detail`. Never contains request-specific data. */
  readonly detail: string;
  /** The Proxy-Status error type used when the classifier has nothing more precise. */
  readonly proxyStatus: ProxyStatusError | null;
  /** The status RFC 9209 recommends for this failure. */
  readonly rfc9209Status: number;
}

export const FAILURES: Readonly<Record<FailureCode, FailureDescription>> = {
  UPSTREAM_DNS_FAILED: {
    detail: "The upstream service's host name could not be resolved.",
    proxyStatus: 'dns_error',
    rfc9209Status: 502,
  },
  UPSTREAM_UNREACHABLE: {
    detail: 'The upstream service could not be reached over the network.',
    proxyStatus: 'destination_ip_unroutable',
    rfc9209Status: 502,
  },
  UPSTREAM_CONNECT_REFUSED: {
    detail: 'The upstream service refused the connection.',
    proxyStatus: 'connection_refused',
    rfc9209Status: 502,
  },
  UPSTREAM_CONNECT_TIMEOUT: {
    detail: 'The connection to the upstream service timed out.',
    proxyStatus: 'connection_timeout',
    rfc9209Status: 504,
  },
  UPSTREAM_TLS_FAILED: {
    detail: 'The secure connection to the upstream service could not be established.',
    proxyStatus: 'tls_protocol_error',
    rfc9209Status: 502,
  },
  UPSTREAM_RESET: {
    detail: 'The upstream service closed the connection before sending a response.',
    proxyStatus: 'connection_terminated',
    rfc9209Status: 502,
  },
  UPSTREAM_RESPONSE_TIMEOUT: {
    detail: 'The upstream service did not respond in time.',
    proxyStatus: 'http_response_timeout',
    rfc9209Status: 504,
  },
  UPSTREAM_BAD_RESPONSE: {
    detail: 'The upstream service sent a malformed response.',
    proxyStatus: 'http_protocol_error',
    rfc9209Status: 502,
  },
  UPSTREAM_STATUS: {
    detail: 'The upstream service answered with an error status.',
    proxyStatus: null,
    rfc9209Status: 502,
  },
  CIRCUIT_OPEN: {
    detail: 'The upstream service is failing; requests to it are paused for a while.',
    proxyStatus: 'destination_unavailable',
    rfc9209Status: 503,
  },
  UPSTREAM_OVERLOADED: {
    detail: 'Too many requests are in flight to the upstream service.',
    proxyStatus: 'connection_limit_reached',
    rfc9209Status: 503,
  },
  UPSTREAM_RESPONSE_INCOMPLETE: {
    detail: 'The upstream response broke off before it was complete.',
    proxyStatus: 'http_response_incomplete',
    rfc9209Status: 502,
  },
  PROXY_INTERNAL_ERROR: {
    detail: 'The proxy failed while handling the request.',
    proxyStatus: 'proxy_internal_error',
    rfc9209Status: 500,
  },
  REQUEST_INVALID: {
    detail: 'The request cannot be forwarded.',
    proxyStatus: 'http_request_error',
    rfc9209Status: 400,
  },
  REQUEST_TOO_LARGE: {
    detail: 'The request body is larger than this proxy accepts.',
    proxyStatus: 'http_request_error',
    rfc9209Status: 413,
  },
  REQUEST_TIMEOUT: {
    detail: 'The request body did not arrive in time.',
    proxyStatus: 'http_request_error',
    rfc9209Status: 408,
  },
};

/**
 * The status RFC 9209 recommends: 504 for timeouts, 503 when the proxy refuses
 * to call a failing or saturated upstream, 500 for the proxy's own faults,
 * 502 otherwise. Pass it as the `status` option to use it.
 */
export function rfc9209Status(code: FailureCode, proxyStatus?: ProxyStatusError | null): number {
  if (proxyStatus === 'dns_timeout') return 504;
  return FAILURES[code].rfc9209Status;
}

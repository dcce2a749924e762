// Maps what went wrong in one attempt to a public failure class. A pure
// function of the error and the phase the attempt was in: Node and undici
// raise the same codes in different phases, so the phase decides.

import { errorCode, HOOK_ERROR_CODE, isLimitExceeded, isProxyTimeout } from './errors.js';
import { FAILURES, type FailureCode, type ProxyStatusError } from './failures.js';

/**
 * Where an attempt was when it failed.
 * - `connect`: DNS, TCP and TLS; no byte of the request has been written.
 * - `request`: the request is being written to the upstream.
 * - `response`: the request was sent; waiting for the response, up to its
 *   first body byte (until then nothing has reached the client).
 * - `body`: the response has started to reach the client; streaming the body.
 */
export type Phase = 'connect' | 'request' | 'response' | 'body';

export interface Classification {
  readonly code: FailureCode;
  readonly proxyStatus: ProxyStatusError;
}

const DNS_TIMEOUT_CODES = new Set(['EAI_AGAIN', 'ETIMEOUT']);
const DNS_CODES = new Set([
  'ENOTFOUND',
  'EAI_FAIL',
  'EAI_NONAME',
  'EAI_NODATA',
  'EAI_ADDRFAMILY',
  'ENODATA',
  'ESERVFAIL',
  'EREFUSED',
  'EFORMERR',
  'ENONAME',
  'EBADNAME',
  'EBADRESP',
]);
const UNROUTABLE_CODES = new Set(['EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN', 'EADDRNOTAVAIL']);
const PROHIBITED_CODES = new Set(['EACCES', 'EPERM']);
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'UND_ERR_SOCKET', 'ETIMEDOUT']);
// OpenSSL's X509 verification results, as Node exposes them, plus Node's own.
const CERTIFICATE_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_CRL',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECRYPT_CRL_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CRL_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CRL_NOT_YET_VALID',
  'CRL_HAS_EXPIRED',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'ERROR_IN_CRL_LAST_UPDATE_FIELD',
  'ERROR_IN_CRL_NEXT_UPDATE_FIELD',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'INVALID_CA',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);
const HEADER_SIZE_CODES = new Set(['HPE_HEADER_OVERFLOW', 'UND_ERR_HEADERS_OVERFLOW']);
// Node refusing to send what the upstream answered (a status below 100, a
// header value with control characters): the upstream's malformed response.
const UNSENDABLE_RESPONSE_CODES = new Set(['ERR_HTTP_INVALID_STATUS_CODE', 'ERR_INVALID_CHAR', 'ERR_HTTP_INVALID_HEADER_VALUE', 'ERR_INVALID_HTTP_TOKEN']);
// undici's verdicts on a response's framing: a body longer or shorter than
// its Content-Length (a 204 with a body, Content-Length with
// Transfer-Encoding, two differing Content-Lengths), and the assertions its
// parser makes on the status line (a status below 100, a 101 without
// `Upgrade` to a plain request). Raised while the response is read, they are
// the upstream's malformed answer, not the proxy's fault.
const MALFORMED_RESPONSE_CODES = new Set(['UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'ERR_ASSERTION']);
// undici's SocketError for a response it did not ask for (an interim `100
// Continue` it never requested, bytes with no request in flight) or an
// upgrade it did not request. Its code is the one of every socket error, so
// only its message tells these apart from a reset.
const UNEXPECTED_RESPONSE_MESSAGES = new Set(['bad response', 'bad upgrade']);

function failure(code: FailureCode, proxyStatus?: ProxyStatusError): Classification {
  return { code, proxyStatus: proxyStatus ?? FAILURES[code].proxyStatus ?? 'proxy_internal_error' };
}

function isTlsProtocolCode(code: string): boolean {
  return code === 'EPROTO' || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_');
}

function isParserError(error: unknown, code: string | undefined): boolean {
  if (code?.startsWith('HPE_') === true) return true;
  return error instanceof Error && error.name === 'HTTPParserError';
}

function isSystemError(error: unknown): boolean {
  return typeof error === 'object' && error !== null && typeof (error as { syscall?: unknown }).syscall === 'string';
}

/** Classifies a failed attempt. Client aborts are not failures and never reach here. */
export function classifyError(error: unknown, phase: Phase): Classification {
  if (errorCode(error) === HOOK_ERROR_CODE) return failure('PROXY_INTERNAL_ERROR');
  // The client's fault, whatever the phase: it stopped sending its body.
  if (isProxyTimeout(error) && error.timer === 'upload') return failure('REQUEST_TIMEOUT');
  if (isLimitExceeded(error)) {
    if (error.body === 'request') return failure('REQUEST_TOO_LARGE');
    return phase === 'body' ? failure('UPSTREAM_RESPONSE_INCOMPLETE', 'http_response_body_size') : failure('UPSTREAM_BAD_RESPONSE', 'http_response_body_size');
  }
  if (phase === 'body') {
    const idle =
      (isProxyTimeout(error) && error.timer === 'idle') || errorCode(error) === 'UND_ERR_BODY_TIMEOUT';
    return failure('UPSTREAM_RESPONSE_INCOMPLETE', idle ? 'connection_read_timeout' : 'http_response_incomplete');
  }
  if (isProxyTimeout(error)) {
    return error.timer === 'connect' ? failure('UPSTREAM_CONNECT_TIMEOUT') : failure('UPSTREAM_RESPONSE_TIMEOUT');
  }

  const code = errorCode(error);
  if (code === undefined) {
    return isParserError(error, code) ? failure('UPSTREAM_BAD_RESPONSE') : failure('PROXY_INTERNAL_ERROR');
  }
  if (DNS_TIMEOUT_CODES.has(code)) return failure('UPSTREAM_DNS_FAILED', 'dns_timeout');
  if (DNS_CODES.has(code)) return failure('UPSTREAM_DNS_FAILED', 'dns_error');
  if (UNROUTABLE_CODES.has(code)) return failure('UPSTREAM_UNREACHABLE', 'destination_ip_unroutable');
  if (PROHIBITED_CODES.has(code)) return failure('UPSTREAM_UNREACHABLE', 'destination_ip_prohibited');
  if (code === 'ECONNREFUSED') return failure('UPSTREAM_CONNECT_REFUSED');
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return failure('UPSTREAM_CONNECT_TIMEOUT');
  if (code === 'ETIMEDOUT' && phase === 'connect') return failure('UPSTREAM_CONNECT_TIMEOUT');
  if (CERTIFICATE_CODES.has(code)) return failure('UPSTREAM_TLS_FAILED', 'tls_certificate_error');
  if (isTlsProtocolCode(code)) return failure('UPSTREAM_TLS_FAILED', 'tls_protocol_error');
  if (code === 'UND_ERR_HEADERS_TIMEOUT') return failure('UPSTREAM_RESPONSE_TIMEOUT');
  if (HEADER_SIZE_CODES.has(code)) return failure('UPSTREAM_BAD_RESPONSE', 'http_response_header_section_size');
  if (isParserError(error, code)) return failure('UPSTREAM_BAD_RESPONSE');
  if (phase === 'response' && UNSENDABLE_RESPONSE_CODES.has(code)) return failure('UPSTREAM_BAD_RESPONSE');
  if (phase === 'response' && MALFORMED_RESPONSE_CODES.has(code)) return failure('UPSTREAM_BAD_RESPONSE');
  if (code === 'UND_ERR_SOCKET' && error instanceof Error && UNEXPECTED_RESPONSE_MESSAGES.has(error.message)) return failure('UPSTREAM_BAD_RESPONSE');
  if (RESET_CODES.has(code)) return failure('UPSTREAM_RESET');
  // An unknown system error on the socket is still a broken connection.
  if (isSystemError(error)) return failure('UPSTREAM_RESET');
  return failure('PROXY_INTERNAL_ERROR');
}

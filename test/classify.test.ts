// The classifier is a pure function: a table of (error, phase) → class, with
// errors shaped exactly as Node and undici raise them (see FAILURES.md). It
// reads codes, not messages, but for undici's SocketError, whose code is the
// same for a reset and for a response it did not ask for.

import { describe, expect, it } from 'vitest';
import { classifyError, type Phase } from '../src/index.js';
import { ProxyTimeoutError } from '../src/contract/errors.js';

function systemError(code: string, syscall = 'connect'): Error {
  return Object.assign(new Error(`${syscall} ${code}`), { code, syscall });
}

function undiciError(name: string, code: string | undefined): Error {
  return Object.assign(new Error('undici says no'), { name, code });
}

const aggregate = Object.assign(new AggregateError([systemError('ECONNREFUSED'), systemError('ECONNREFUSED')], ''), {
  code: 'ECONNREFUSED',
});
const aggregateWithoutCode = new AggregateError([systemError('ECONNREFUSED')], '');

const table: [string, unknown, Phase, string, string][] = [
  ['ENOTFOUND', systemError('ENOTFOUND', 'getaddrinfo'), 'connect', 'UPSTREAM_DNS_FAILED', 'dns_error'],
  ['EAI_AGAIN', systemError('EAI_AGAIN', 'getaddrinfo'), 'connect', 'UPSTREAM_DNS_FAILED', 'dns_timeout'],
  ['c-ares ETIMEOUT', systemError('ETIMEOUT', 'queryA'), 'connect', 'UPSTREAM_DNS_FAILED', 'dns_timeout'],
  ['c-ares ESERVFAIL', systemError('ESERVFAIL', 'queryA'), 'connect', 'UPSTREAM_DNS_FAILED', 'dns_error'],
  ['EHOSTUNREACH', systemError('EHOSTUNREACH'), 'connect', 'UPSTREAM_UNREACHABLE', 'destination_ip_unroutable'],
  ['ENETUNREACH', systemError('ENETUNREACH'), 'connect', 'UPSTREAM_UNREACHABLE', 'destination_ip_unroutable'],
  ['EACCES', systemError('EACCES'), 'connect', 'UPSTREAM_UNREACHABLE', 'destination_ip_prohibited'],
  ['ECONNREFUSED', systemError('ECONNREFUSED'), 'connect', 'UPSTREAM_CONNECT_REFUSED', 'connection_refused'],
  ['AggregateError with a code', aggregate, 'connect', 'UPSTREAM_CONNECT_REFUSED', 'connection_refused'],
  ['AggregateError without a code', aggregateWithoutCode, 'connect', 'UPSTREAM_CONNECT_REFUSED', 'connection_refused'],
  ['our connect timer', new ProxyTimeoutError('connect', 100), 'connect', 'UPSTREAM_CONNECT_TIMEOUT', 'connection_timeout'],
  ['undici connect timeout', undiciError('ConnectTimeoutError', 'UND_ERR_CONNECT_TIMEOUT'), 'connect', 'UPSTREAM_CONNECT_TIMEOUT', 'connection_timeout'],
  ['kernel ETIMEDOUT on connect', systemError('ETIMEDOUT'), 'connect', 'UPSTREAM_CONNECT_TIMEOUT', 'connection_timeout'],
  ['kernel ETIMEDOUT on an open connection', systemError('ETIMEDOUT', 'read'), 'response', 'UPSTREAM_RESET', 'connection_terminated'],
  ['self-signed certificate', systemError('DEPTH_ZERO_SELF_SIGNED_CERT', 'connect'), 'connect', 'UPSTREAM_TLS_FAILED', 'tls_certificate_error'],
  ['expired certificate', systemError('CERT_HAS_EXPIRED'), 'connect', 'UPSTREAM_TLS_FAILED', 'tls_certificate_error'],
  ['wrong host name', systemError('ERR_TLS_CERT_ALTNAME_INVALID'), 'connect', 'UPSTREAM_TLS_FAILED', 'tls_certificate_error'],
  ['EPROTO', systemError('EPROTO', 'write'), 'connect', 'UPSTREAM_TLS_FAILED', 'tls_protocol_error'],
  ['OpenSSL alert', systemError('ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION'), 'connect', 'UPSTREAM_TLS_FAILED', 'tls_protocol_error'],
  ['reset during connect', systemError('ECONNRESET'), 'connect', 'UPSTREAM_RESET', 'connection_terminated'],
  ['reset after the request', systemError('ECONNRESET', 'read'), 'response', 'UPSTREAM_RESET', 'connection_terminated'],
  ['undici socket closed', undiciError('SocketError', 'UND_ERR_SOCKET'), 'response', 'UPSTREAM_RESET', 'connection_terminated'],
  ['EPIPE while writing', systemError('EPIPE', 'write'), 'request', 'UPSTREAM_RESET', 'connection_terminated'],
  ['an unknown system error', systemError('EWHATEVER', 'read'), 'response', 'UPSTREAM_RESET', 'connection_terminated'],
  ['our response timer', new ProxyTimeoutError('response', 100), 'response', 'UPSTREAM_RESPONSE_TIMEOUT', 'http_response_timeout'],
  ['the total deadline before headers', new ProxyTimeoutError('total', 100), 'response', 'UPSTREAM_RESPONSE_TIMEOUT', 'http_response_timeout'],
  ['the total deadline while connecting', new ProxyTimeoutError('total', 100), 'connect', 'UPSTREAM_RESPONSE_TIMEOUT', 'http_response_timeout'],
  ['an upload the upstream stopped reading', new ProxyTimeoutError('idle', 100), 'request', 'UPSTREAM_RESPONSE_TIMEOUT', 'http_response_timeout'],
  ['undici headers timeout', undiciError('HeadersTimeoutError', 'UND_ERR_HEADERS_TIMEOUT'), 'response', 'UPSTREAM_RESPONSE_TIMEOUT', 'http_response_timeout'],
  ['parser error without a code', undiciError('HTTPParserError', undefined), 'response', 'UPSTREAM_BAD_RESPONSE', 'http_protocol_error'],
  ['parser error with a code', undiciError('HTTPParserError', 'HPE_INVALID_CONSTANT'), 'response', 'UPSTREAM_BAD_RESPONSE', 'http_protocol_error'],
  ['node parser error', systemError('HPE_INVALID_STATUS', 'read'), 'response', 'UPSTREAM_BAD_RESPONSE', 'http_protocol_error'],
  ['header overflow (node)', systemError('HPE_HEADER_OVERFLOW', 'read'), 'response', 'UPSTREAM_BAD_RESPONSE', 'http_response_header_section_size'],
  ['header overflow (undici)', undiciError('HeadersOverflowError', 'UND_ERR_HEADERS_OVERFLOW'), 'response', 'UPSTREAM_BAD_RESPONSE', 'http_response_header_section_size'],
  ['reset mid-body', systemError('ECONNRESET', 'read'), 'body', 'UPSTREAM_RESPONSE_INCOMPLETE', 'http_response_incomplete'],
  ['close mid-body', undiciError('SocketError', 'UND_ERR_SOCKET'), 'body', 'UPSTREAM_RESPONSE_INCOMPLETE', 'http_response_incomplete'],
  ['bad chunk mid-body', undiciError('HTTPParserError', 'HPE_INVALID_CHUNK_SIZE'), 'body', 'UPSTREAM_RESPONSE_INCOMPLETE', 'http_response_incomplete'],
  ['idle timer mid-body', new ProxyTimeoutError('idle', 100), 'body', 'UPSTREAM_RESPONSE_INCOMPLETE', 'connection_read_timeout'],
  ['undici body timeout', undiciError('BodyTimeoutError', 'UND_ERR_BODY_TIMEOUT'), 'body', 'UPSTREAM_RESPONSE_INCOMPLETE', 'connection_read_timeout'],
  ['the total deadline mid-body', new ProxyTimeoutError('total', 100), 'body', 'UPSTREAM_RESPONSE_INCOMPLETE', 'http_response_incomplete'],
  ['a status Node refuses to send', undiciError('RangeError', 'ERR_HTTP_INVALID_STATUS_CODE'), 'response', 'UPSTREAM_BAD_RESPONSE', 'http_protocol_error'],
  ['a header value Node refuses to send', undiciError('TypeError', 'ERR_INVALID_CHAR'), 'response', 'UPSTREAM_BAD_RESPONSE', 'http_protocol_error'],
  ['a body that does not match its Content-Length', undiciError('ResponseContentLengthMismatchError', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH'), 'response', 'UPSTREAM_BAD_RESPONSE', 'http_protocol_error'],
  ['undici asserting on a status below 100', undiciError('AssertionError', 'ERR_ASSERTION'), 'response', 'UPSTREAM_BAD_RESPONSE', 'http_protocol_error'],
  ['an interim 100 undici did not ask for', Object.assign(new Error('bad response'), { name: 'SocketError', code: 'UND_ERR_SOCKET' }), 'response', 'UPSTREAM_BAD_RESPONSE', 'http_protocol_error'],
  ['an upgrade undici did not ask for', Object.assign(new Error('bad upgrade'), { name: 'SocketError', code: 'UND_ERR_SOCKET' }), 'response', 'UPSTREAM_BAD_RESPONSE', 'http_protocol_error'],
  ['a client that stopped sending its body', new ProxyTimeoutError('upload', 100), 'request', 'REQUEST_TIMEOUT', 'http_request_error'],
  ['a client that stopped sending its body, while waiting for the head', new ProxyTimeoutError('upload', 100), 'response', 'REQUEST_TIMEOUT', 'http_request_error'],
  ['a plain bug', new TypeError('x is not a function'), 'response', 'PROXY_INTERNAL_ERROR', 'proxy_internal_error'],
  ['a closed dispatcher', undiciError('ClientClosedError', 'UND_ERR_CLOSED'), 'connect', 'PROXY_INTERNAL_ERROR', 'proxy_internal_error'],
  ['a thrown string', 'boom', 'connect', 'PROXY_INTERNAL_ERROR', 'proxy_internal_error'],
];

describe('classifyError', () => {
  it.each(table)('%s', (_name, error, phase, code, proxyStatus) => {
    expect(classifyError(error, phase)).toStrictEqual({ code, proxyStatus });
  });

  it('never looks at the message', () => {
    const misleading = Object.assign(new Error('ECONNREFUSED getaddrinfo ENOTFOUND socket hang up'), { code: 'EPIPE', syscall: 'write' });
    expect(classifyError(misleading, 'request').code).toBe('UPSTREAM_RESET');
  });
});

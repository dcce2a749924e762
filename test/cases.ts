// The failure classes every framework must answer identically: how to
// produce each on loopback, and the exact contract the client must get.

import { readFileSync } from 'node:fs';
import type request from 'supertest';
import type { Dispatcher } from 'undici';
import { expect } from 'vitest';
import { FAILURES, type FailureCode } from '../src/index.js';
import {
  connectHangDispatcher,
  dnsFailureDispatcher,
  faults,
  refusedUrl,
  unreachableDispatcher,
  type Behaviour,
} from '../src/testing/index.js';
import { onCleanup, upstream } from './support.js';

export const tls = {
  key: readFileSync(new URL('./fixtures/self-signed.key', import.meta.url)),
  cert: readFileSync(new URL('./fixtures/self-signed.crt', import.meta.url)),
};

export interface Case {
  readonly name: string;
  readonly code: FailureCode;
  readonly proxyStatus: string;
  readonly setup: () => { target: string; dispatcher?: Dispatcher } | Promise<{ target: string; dispatcher?: Dispatcher }>;
  readonly timeout?: { connect?: number; response?: number; idle?: number; total?: number };
  /** Attempts a GET gets under the default retry policy. */
  readonly attempts?: number;
}

function withDispatcher(dispatcher: Dispatcher): { target: string; dispatcher: Dispatcher } {
  onCleanup(() => dispatcher.destroy());
  // The name is never resolved: the dispatcher fails before any lookup or connect.
  return { target: 'http://orders.test:8080', dispatcher };
}

function behaving(behaviour: Behaviour) {
  return async () => ({ target: (await upstream({ fallback: behaviour })).url });
}

export const cases: Case[] = [
  { name: 'a name that does not resolve', code: 'UPSTREAM_DNS_FAILED', proxyStatus: 'dns_error', setup: () => withDispatcher(dnsFailureDispatcher('ENOTFOUND')) },
  { name: 'a resolver that fails', code: 'UPSTREAM_DNS_FAILED', proxyStatus: 'dns_timeout', setup: () => withDispatcher(dnsFailureDispatcher('EAI_AGAIN')) },
  { name: 'no route to the host', code: 'UPSTREAM_UNREACHABLE', proxyStatus: 'destination_ip_unroutable', setup: () => withDispatcher(unreachableDispatcher('EHOSTUNREACH')) },
  { name: 'a network that is unreachable', code: 'UPSTREAM_UNREACHABLE', proxyStatus: 'destination_ip_unroutable', setup: () => withDispatcher(unreachableDispatcher('ENETUNREACH')) },
  { name: 'a destination the system forbids', code: 'UPSTREAM_UNREACHABLE', proxyStatus: 'destination_ip_prohibited', setup: () => withDispatcher(unreachableDispatcher('EACCES')) },
  { name: 'a closed port', code: 'UPSTREAM_CONNECT_REFUSED', proxyStatus: 'connection_refused', setup: async () => ({ target: await refusedUrl() }) },
  { name: 'a connect that never completes', code: 'UPSTREAM_CONNECT_TIMEOUT', proxyStatus: 'connection_timeout', setup: () => withDispatcher(connectHangDispatcher()), timeout: { connect: 100 } },
  { name: 'a self-signed certificate', code: 'UPSTREAM_TLS_FAILED', proxyStatus: 'tls_certificate_error', setup: async () => ({ target: (await upstream({ tls })).url }), attempts: 1 },
  { name: 'a reset after the request was read', code: 'UPSTREAM_RESET', proxyStatus: 'connection_terminated', setup: behaving(faults.resetBeforeHeaders()) },
  { name: 'a clean close before headers', code: 'UPSTREAM_RESET', proxyStatus: 'connection_terminated', setup: behaving(faults.closeBeforeHeaders()) },
  { name: 'an upstream that never answers', code: 'UPSTREAM_RESPONSE_TIMEOUT', proxyStatus: 'http_response_timeout', setup: behaving(faults.hang()), timeout: { response: 100 }, attempts: 1 },
  { name: 'the total deadline before headers', code: 'UPSTREAM_RESPONSE_TIMEOUT', proxyStatus: 'http_response_timeout', setup: behaving(faults.hang()), timeout: { total: 100 }, attempts: 1 },
  { name: 'a malformed status line', code: 'UPSTREAM_BAD_RESPONSE', proxyStatus: 'http_protocol_error', setup: behaving(faults.malformedStatusLine()) },
  { name: 'a header section over the limit', code: 'UPSTREAM_BAD_RESPONSE', proxyStatus: 'http_response_header_section_size', setup: behaving(faults.oversizedHeaders()) },
];

export function expectContract(
  response: request.Response,
  code: FailureCode,
  proxyStatus: string,
  extra: { status?: number; title?: string; attempts?: number } = {},
): void {
  const status = extra.status ?? 502;
  const body = {
    type: 'about:blank',
    title: extra.title ?? 'Bad Gateway',
    status,
    detail: FAILURES[code].detail,
    code,
    upstream: 'orders',
    attempts: extra.attempts ?? 1,
    requestId: 'req-42',
  };
  expect(response.status).toBe(status);
  expect(response.headers['content-type']).toBe('application/problem+json');
  expect(response.headers['cache-control']).toBe('no-store');
  expect(response.headers['proxy-status']).toBe(proxyStatus);
  expect(response.headers['x-request-id']).toBe('req-42');
  expect(response.headers['content-length']).toBe(String(Buffer.byteLength(JSON.stringify(body))));
  expect(JSON.parse(response.text)).toStrictEqual(body);
}

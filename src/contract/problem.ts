// Renders the error contract: an RFC 9457 problem body (or the same fields as
// HTML or plain text for clients that only accept those), with Proxy-Status
// (RFC 9209), Cache-Control: no-store and the request id. Nothing here comes
// from the upstream's error: only fixed sentences and the client's own id.

import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ClientResponse } from '../exchange/client-response.js';
import { FAILURES, type FailureCode, type ProxyStatusError } from './failures.js';

/** The JSON body of every error response. */
export interface ProblemDetails {
  readonly type: 'about:blank';
  readonly title: string;
  readonly status: number;
  readonly detail: string;
  readonly code: FailureCode;
  /** The upstream's public name; absent when the proxy was given none. */
  readonly upstream?: string;
  readonly attempts: number;
  readonly requestId: string;
}

export interface ProblemInput {
  readonly code: FailureCode;
  readonly status: number;
  readonly proxyStatus: ProxyStatusError | null;
  readonly receivedStatus: number | null;
  readonly retryAfter: string | null;
  readonly upstream: string | null;
  readonly attempts: number;
  readonly requestId: string;
  readonly proxyName: string;
  readonly requestIdHeader: string;
}

export function problemDetails(input: ProblemInput): ProblemDetails {
  return {
    type: 'about:blank',
    title: STATUS_CODES[input.status] ?? 'Error',
    status: input.status,
    detail: FAILURES[input.code].detail,
    code: input.code,
    ...(input.upstream === null ? {} : { upstream: input.upstream }),
    attempts: input.attempts,
    requestId: input.requestId,
  };
}

/** The Proxy-Status field value (RFC 9209 §2). */
export function proxyStatusValue(proxyName: string, proxyStatus: ProxyStatusError | null, receivedStatus: number | null): string {
  let value = proxyName;
  if (proxyStatus !== null) value += `; error=${proxyStatus}`;
  if (receivedStatus !== null) value += `; received-status=${receivedStatus}`;
  return value;
}

type Format = 'json' | 'html' | 'text';

/** The q-value the Accept header gives `type` (most specific range wins, RFC 9110 §12.5.1). */
function quality(ranges: readonly { type: string; q: number }[], type: string): number {
  const [major] = type.split('/');
  let best = -1;
  let q = 0;
  for (const range of ranges) {
    const specificity = range.type === type ? 2 : range.type === `${major ?? ''}/*` ? 1 : range.type === '*/*' ? 0 : -1;
    if (specificity > best) {
      best = specificity;
      q = range.q;
    }
  }
  return q;
}

export function negotiateFormat(accept: string | undefined): Format {
  if (accept === undefined || accept.trim() === '') return 'json';
  const ranges = accept.split(',').map((part) => {
    const [type = '', ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    const qParam = params.find((p) => p.startsWith('q='));
    const q = qParam === undefined ? 1 : Number(qParam.slice(2));
    return { type, q: Number.isFinite(q) ? q : 0 };
  });
  const json = Math.max(quality(ranges, 'application/problem+json'), quality(ranges, 'application/json'));
  const html = quality(ranges, 'text/html');
  const text = quality(ranges, 'text/plain');
  if (json > 0 && json >= html && json >= text) return 'json';
  if (html > 0 && html >= text) return 'html';
  if (text > 0) return 'text';
  // Nothing acceptable: RFC 9110 allows answering anyway; JSON is the contract.
  return 'json';
}

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function fieldsOf(problem: ProblemDetails): [string, string][] {
  return Object.entries(problem)
    .filter(([key]) => key !== 'type')
    .map(([key, value]) => [key, String(value)]);
}

function render(problem: ProblemDetails, format: Format): { contentType: string; body: string } {
  if (format === 'html') {
    const rows = fieldsOf(problem)
      .map(([key, value]) => `<dt>${key}</dt><dd>${escapeHtml(value)}</dd>`)
      .join('');
    return {
      contentType: 'text/html; charset=utf-8',
      body: `<!doctype html><html><head><meta charset="utf-8"><title>${problem.status} ${escapeHtml(problem.title)}</title></head><body><h1>${problem.status} ${escapeHtml(problem.title)}</h1><p>${escapeHtml(problem.detail)}</p><dl>${rows}</dl></body></html>\n`,
    };
  }
  if (format === 'text') {
    return {
      contentType: 'text/plain; charset=utf-8',
      body: `${fieldsOf(problem).map(([key, value]) => `${key}: ${value}`).join('\n')}\n`,
    };
  }
  return { contentType: 'application/problem+json', body: JSON.stringify(problem) };
}

// Representation headers another middleware (or a partial upstream response)
// may have set: they would describe a body that is not the one being sent.
const STALE_HEADERS = ['content-encoding', 'content-range', 'content-disposition', 'content-language', 'etag', 'last-modified', 'location'];

/** `Vary` values joined, each field name once (case-insensitive); `*` absorbs the rest. */
export function joinVary(...values: (string | number | readonly string[] | undefined)[]): string {
  const names = new Map<string, string>();
  for (const value of values) {
    if (value === undefined) continue;
    for (const token of (typeof value === 'object' ? value.join(',') : String(value)).split(',')) {
      const name = token.trim();
      if (name !== '') names.set(name.toLowerCase(), name);
    }
  }
  return names.has('*') ? '*' : [...names.values()].join(', ');
}

/** The error response's headers and body, for `req`. */
function problemResponse(req: IncomingMessage, input: ProblemInput, vary: string | number | readonly string[] | undefined): { headers: Record<string, string | number>; body: string } {
  const problem = problemDetails(input);
  const { contentType, body } = render(problem, negotiateFormat(req.headers.accept));
  const headers: Record<string, string | number> = {
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    vary: joinVary(vary, 'Accept'),
    'proxy-status': proxyStatusValue(input.proxyName, input.proxyStatus, input.receivedStatus),
    [input.requestIdHeader]: input.requestId,
  };
  if (input.retryAfter !== null) headers['retry-after'] = input.retryAfter;
  return { headers, body };
}

/** Sends the error response. The caller has checked that no header was sent yet. */
export function sendProblem(req: IncomingMessage, res: ClientResponse, input: ProblemInput): void {
  const { headers, body } = problemResponse(req, input, res.getHeader('vary'));
  for (const name of STALE_HEADERS) res.removeHeader(name);
  res.writeHead(input.status, headers);
  if (req.method === 'HEAD') res.end();
  else res.end(body);
}

/**
 * Writes the error response on a raw socket (an upgrade request, which has
 * no ServerResponse), then closes the connection.
 */
export function sendProblemOnSocket(req: IncomingMessage, socket: Duplex, input: ProblemInput): void {
  const { headers, body } = problemResponse(req, input, undefined);
  headers.connection = 'close';
  let head = `HTTP/1.1 ${input.status} ${STATUS_CODES[input.status] ?? 'Error'}\r\n`;
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(`${head}\r\n${req.method === 'HEAD' ? '' : body}`);
}

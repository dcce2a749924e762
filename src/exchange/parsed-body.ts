// A body that a framework's parser already read, turned back into bytes:
// its raw bytes when anyone kept them (the only exact answer), else the
// parsed value re-encoded with the meaning its media type gives it.

import type { IncomingMessage, ServerResponse } from 'node:http';

/** A body a framework's parser already read, and its raw bytes or text when it kept them. */
export interface ParsedBody {
  readonly parsed: unknown;
  readonly raw?: unknown;
}

export function mediaType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

function charsetOf(req: IncomingMessage): BufferEncoding {
  const match = /;\s*charset\s*=\s*"?([\w-]+)"?/i.exec(req.headers['content-type'] ?? '');
  const charset = match?.[1]?.toLowerCase();
  if (charset === 'latin1' || charset === 'iso-8859-1') return 'latin1';
  return 'utf8';
}

type FormValue = string | number | boolean | null | undefined | readonly FormValue[] | { readonly [key: string]: FormValue };

function isScalar(value: unknown): value is string | number | boolean | null | undefined {
  return value === null || value === undefined || typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';
}

/**
 * A repeated key (`a=1&a=2`, parsed as `{ a: ['1', '2'] }` by both
 * `extended` settings) is written repeated again; only what the parser
 * itself read from brackets (`b[c]=d` into `{ b: { c: 'd' } }`) gets
 * brackets back.
 */
function appendForm(params: URLSearchParams, key: string, value: unknown): boolean {
  if (isScalar(value)) {
    params.append(key, value === null || value === undefined ? '' : String(value));
    return true;
  }
  if (Array.isArray(value)) {
    if (value.every(isScalar)) return value.every((item) => appendForm(params, key, item));
    return value.every((item, index) => appendForm(params, `${key}[${index}]`, item));
  }
  if (typeof value === 'object') {
    return Object.entries(value as Record<string, FormValue>).every(([name, item]) => appendForm(params, `${key}[${name}]`, item));
  }
  return false;
}

function encodeForm(parsed: object): Buffer | null {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(parsed)) {
    if (!appendForm(params, key, value)) return null;
  }
  return Buffer.from(params.toString());
}

/** The bytes to forward for a consumed body, or `null` when they cannot be had. */
export function rebuildBody(req: IncomingMessage, { parsed, raw }: ParsedBody): Buffer | null {
  // A raw copy kept by the app or the parser is the exact bytes.
  if (Buffer.isBuffer(raw)) return raw;
  if (typeof raw === 'string') return Buffer.from(raw, charsetOf(req));
  if (Buffer.isBuffer(parsed)) return parsed;
  if (typeof parsed === 'string') return Buffer.from(parsed, charsetOf(req));
  if (typeof parsed !== 'object' || parsed === null) return null;
  const type = mediaType(req);
  if (type === 'application/json' || type.endsWith('+json')) return Buffer.from(JSON.stringify(parsed));
  if (type === 'application/x-www-form-urlencoded') return encodeForm(parsed);
  return null;
}

/**
 * A `verify` function for Express's body parsers that keeps the exact bytes
 * they read on `req.rawBody`, so the proxy forwards them unchanged:
 * `app.use(express.json({ verify: keepRawBody }))`. Without it a parsed body
 * is re-encoded, which loses what JSON.parse drops (big integers, duplicate
 * keys, number spelling, whitespace).
 */
export function keepRawBody(req: IncomingMessage, _res: ServerResponse, raw: Buffer): void {
  Object.assign(req, { rawBody: raw });
}

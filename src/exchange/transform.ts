// transformResponse: a matching response is read whole (up to `maxBytes`),
// decoded with node:zlib as its Content-Encoding says, handed to the user's
// function, and encoded again the same way. A response over `maxBytes` —
// before or after decoding — or in an encoding zlib does not speak, passes
// through untransformed.

import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { promisify } from 'node:util';
import { brotliCompress, brotliDecompress, deflate, gunzip, gzip, inflate, type ZlibOptions } from 'node:zlib';
import { settleHook } from './hook-time.js';

export interface TransformContext {
  readonly statusCode: number;
  /** The response headers as the client will get them (lower-case names). */
  readonly headers: Readonly<Record<string, string | string[]>>;
  readonly req: IncomingMessage;
}

export interface TransformResponse {
  /** Which responses to transform; the others stream through untouched. */
  match: (statusCode: number, headers: IncomingHttpHeaders) => boolean;
  /** The new body, from the decoded old one. May be async; bounded by `timeout.hook`. */
  transform: (body: Buffer, context: TransformContext) => Buffer | string | Promise<Buffer | string>;
  /**
   * The largest body read for transforming, in bytes, as it came and once
   * decoded: a larger one passes through untransformed. Default 1 MiB.
   */
  maxBytes?: number;
}

/**
 * The largest body a transform may return, in bytes (1 GiB). zlib's one-shot
 * encoders silently truncate an input of 4 GiB or more (brotli returns an
 * empty stream), so a larger result is the hook's fault, never sent.
 */
export const TRANSFORM_RESULT_MAX_BYTES = 1024 * 1024 * 1024;

type Decode = (data: Buffer, options: ZlibOptions) => Promise<Buffer>;
type Codec = readonly [decode: Decode, encode: (data: Buffer) => Promise<Buffer>];

const IDENTITY: Codec = [(data) => Promise.resolve(data), (data) => Promise.resolve(data)];
const CODECS: Readonly<Record<string, Codec>> = {
  gzip: [promisify(gunzip), promisify(gzip)],
  'x-gzip': [promisify(gunzip), promisify(gzip)],
  deflate: [promisify(inflate), promisify(deflate)],
  br: [promisify(brotliDecompress), promisify(brotliCompress)],
};

/**
 * The codec for a `Content-Encoding`, or `null` when the body cannot be
 * decoded here: an unknown coding, or several (`gzip, gzip`, or two fields).
 * Decoding one layer of several would hand the transform encoded bytes.
 */
export function codecFor(encoding: string | string[] | number | undefined): Codec | null {
  if (encoding === undefined) return IDENTITY;
  if (typeof encoding !== 'string') return null;
  const name = encoding.trim().toLowerCase();
  return name === 'identity' ? IDENTITY : (CODECS[name] ?? null);
}

/**
 * The transformed body, or `null` when the original is to pass through
 * untransformed (it does not decode as it says, or decodes to more than
 * `maxBytes`: a decompression bomb stops at `maxBytes` of output). Throws a
 * RewriteHookError when the transform fails, returns something unsendable, or
 * does not settle within `hookMs` (0: no bound).
 */
export async function transformBody(
  transform: Readonly<Required<TransformResponse>>,
  encoding: string | string[] | number | undefined,
  original: Buffer,
  context: TransformContext,
  hookMs: number,
): Promise<Buffer | null> {
  const codec = codecFor(encoding);
  if (codec === null) return null;
  const decoded = await codec[0](original, { maxOutputLength: transform.maxBytes }).catch(() => null);
  if (decoded === null || decoded.length > transform.maxBytes) return null;
  return settleHook('transformResponse', hookMs, async () => {
    const result = await transform.transform(decoded, context);
    if (typeof result !== 'string' && !Buffer.isBuffer(result)) throw new TypeError(`returned ${typeof result}, not a Buffer or string`);
    const body = typeof result === 'string' ? Buffer.from(result) : result;
    if (body.length > TRANSFORM_RESULT_MAX_BYTES) throw new RangeError(`returned ${body.length} bytes, more than ${TRANSFORM_RESULT_MAX_BYTES}`);
    return codec[1](body);
  });
}

// transformResponse: a matching response is read whole (up to `maxBytes`),
// decoded with node:zlib as its Content-Encoding says, handed to the user's
// function, and encoded again the same way. A response over `maxBytes`, or in
// an encoding zlib does not speak, passes through untransformed.

import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { promisify } from 'node:util';
import { brotliCompress, brotliDecompress, deflate, gunzip, gzip, inflate } from 'node:zlib';

export interface TransformContext {
  readonly statusCode: number;
  /** The response headers as the client will get them (lower-case names). */
  readonly headers: Readonly<Record<string, string | string[]>>;
  readonly req: IncomingMessage;
}

export interface TransformResponse {
  /** Which responses to transform; the others stream through untouched. */
  match: (statusCode: number, headers: IncomingHttpHeaders) => boolean;
  /** The new body, from the decoded old one. May be async. */
  transform: (body: Buffer, context: TransformContext) => Buffer | string | Promise<Buffer | string>;
  /** The largest body read for transforming, in bytes; a larger one passes through untransformed. Default 1 MiB. */
  maxBytes?: number;
}

type Codec = readonly [decode: (data: Buffer) => Promise<Buffer>, encode: (data: Buffer) => Promise<Buffer>];

const CODECS: Readonly<Record<string, Codec>> = {
  identity: [(data) => Promise.resolve(data), (data) => Promise.resolve(data)],
  gzip: [promisify(gunzip), promisify(gzip)],
  'x-gzip': [promisify(gunzip), promisify(gzip)],
  deflate: [promisify(inflate), promisify(deflate)],
  br: [promisify(brotliDecompress), promisify(brotliCompress)],
};

/** The codec for a `Content-Encoding`, or `null` when the body cannot be decoded here (several codings, or an unknown one). */
export function codecFor(encoding: string | string[] | undefined): Codec | null {
  if (encoding === undefined) return CODECS.identity ?? null;
  if (Array.isArray(encoding)) return null;
  return CODECS[encoding.trim().toLowerCase()] ?? null;
}

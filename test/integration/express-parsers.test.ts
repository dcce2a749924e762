// Ecosystem integration (issue 10), Express 5 and 4: every body parser
// Express ships, mounted before the proxy. Whatever a parser read, the
// upstream must receive the client's ORIGINAL bytes, with a Content-Length
// that describes them.

import type { RequestHandler } from 'express';
import { keepRawBody } from 'resilient-proxy';
import { describe, expect, it } from 'vitest';
import { json, send, sha256, startUpstream, watchProcess } from './harness.js';
import { EXPRESS_VERSIONS, expectAftermath, expressStack, type ExpressFactory } from './express-stack.js';

watchProcess();

interface ParserCase {
  readonly name: string;
  readonly parsers: (factory: ExpressFactory) => RequestHandler[];
  readonly contentType: string;
  readonly body: Buffer;
  /** How to show the bytes in a failure message. */
  readonly show?: BufferEncoding;
}

const binary = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7) % 256));

const CASES: readonly ParserCase[] = [
  {
    name: 'express.json({ verify: keepRawBody }): a big number and duplicate keys',
    parsers: (f) => [f.json({ verify: keepRawBody })],
    contentType: 'application/json',
    body: Buffer.from('{"n":12345678901234567890,"k":1,"k":2}'),
  },
  {
    name: 'express.json({ verify: keepRawBody }): whitespace and escapes as the client wrote them',
    parsers: (f) => [f.json({ verify: keepRawBody })],
    contentType: 'application/json; charset=utf-8',
    body: Buffer.from('{ "name": "Zo\\u00eb ✓",\n  "list": [1.0, 2e3] }\n'),
  },
  {
    name: 'express.json() without keepRawBody: a body JSON.stringify reproduces',
    parsers: (f) => [f.json()],
    contentType: 'application/json',
    body: Buffer.from('{"a":1,"list":["x","y"]}'),
  },
  {
    name: 'express.urlencoded({ extended: true }): a repeated key',
    parsers: (f) => [f.urlencoded({ extended: true })],
    contentType: 'application/x-www-form-urlencoded',
    body: Buffer.from('a=1&a=2'),
  },
  {
    name: 'express.urlencoded({ extended: false }): a repeated key',
    parsers: (f) => [f.urlencoded({ extended: false })],
    contentType: 'application/x-www-form-urlencoded',
    body: Buffer.from('a=1&a=2'),
  },
  {
    name: 'express.urlencoded({ extended: true }): brackets, spaces and escapes',
    parsers: (f) => [f.urlencoded({ extended: true })],
    contentType: 'application/x-www-form-urlencoded',
    body: Buffer.from('b%5Bc%5D=d&s=hello+world%21&e=%E2%9C%93'),
  },
  {
    name: 'express.urlencoded({ extended: true, verify: keepRawBody }): a repeated key',
    parsers: (f) => [f.urlencoded({ extended: true, verify: keepRawBody })],
    contentType: 'application/x-www-form-urlencoded',
    body: Buffer.from('a=1&a=2&b[]=x'),
  },
  {
    name: 'express.text()',
    parsers: (f) => [f.text()],
    contentType: 'text/plain; charset=utf-8',
    body: Buffer.from('plain words ✓\r\nsecond line\n'),
  },
  {
    name: 'express.raw()',
    parsers: (f) => [f.raw()],
    contentType: 'application/octet-stream',
    body: binary,
    show: 'hex',
  },
];

describe('keepRawBody', () => {
  it("is exported from 'resilient-proxy' as a verify function for Express's parsers", () => {
    expect(keepRawBody).toBeTypeOf('function');
  });
});

describe.each(EXPRESS_VERSIONS)('$name: a body parser mounted before the proxy', ({ factory }) => {
  it.each(CASES)('$name: the upstream receives the original bytes', async ({ parsers, contentType, body, show = 'utf8' }) => {
    const up = await startUpstream();
    const stack = await expressStack(factory, up.url, { parsers: parsers(factory) });

    const reply = await send(`${stack.url}/api/upload/parsed`, { method: 'POST', headers: { 'content-type': contentType }, body });

    expect(reply.status).toBe(200);
    const received = await up.received.next((r) => r.url === '/upload/parsed', 'the parsed body at the upstream');
    expect(received.body.toString(show)).toBe(body.toString(show));
    expect([received.bytes, received.sha256]).toStrictEqual([body.length, sha256(body)]);
    expect(received.headers['content-length']).toBe(String(body.length));
    expect(received.headers['content-type']).toBe(contentType);
    expect(json(reply)).toMatchObject({ bytes: body.length, sha256: sha256(body) });
    await expectAftermath(stack, 'POST', '/api/upload/parsed', 200);
  });
});

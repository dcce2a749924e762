// The Express app of the ecosystem suite, the way a user would build one:
// request logging (every predefined morgan format, and pino-http), security
// headers, CORS, rate limiting, compression, cookies, sessions, body parsers
// and an upload route on multer, then the proxy at /api.

import type { IncomingMessage, ServerResponse } from 'node:http';
import compression from 'compression';
import cookieParser from 'cookie-parser';
import cors from 'cors';
import express from 'express';
import express4 from 'express4';
import { rateLimit } from 'express-rate-limit';
import session from 'express-session';
import helmet from 'helmet';
import morgan from 'morgan';
import multer from 'multer';
import { pino } from 'pino';
import { pinoHttp } from 'pino-http';
import type { Request, RequestHandler, Response } from 'express';
import { keepRawBody, type ProxyOptions } from 'resilient-proxy';
import { expect } from 'vitest';
import { listen, proxy } from '../support.js';
import { LOOPBACK, LogLines, Recorder, expectIntact, expectStillServing, remoteAddressOf, sha256, stripAnsi, type IntactRecord } from './harness.js';

export type ExpressFactory = typeof express;

export const EXPRESS_VERSIONS: readonly { readonly name: string; readonly factory: ExpressFactory }[] = [
  { name: 'Express 5', factory: express },
  { name: 'Express 4', factory: express4 },
];

export const MORGAN_FORMATS = ['combined', 'common', 'dev', 'short', 'tiny'] as const;
export type MorganFormat = (typeof MORGAN_FORMATS)[number];

/** A browser origin the CORS policy allows. */
export const APP_ORIGIN = 'http://app.example';

/** Retries stay on (so small bodies are buffered for replay) but wait 1 ms. */
export const PROXY_RETRY = { minDelay: 1, maxDelay: 1 } as const;

export interface ExpressStack {
  readonly url: string;
  readonly morgan: Record<MorganFormat, LogLines>;
  readonly pino: LogLines;
  /** morgan with the README's `:delivered` token (`whole` or `cut`): `:method :url :status :delivered`. */
  readonly delivered: LogLines;
  readonly intact: Recorder<IntactRecord>;
}

/** Snapshots, once the response is over, what a middleware before the proxy can still read of the request. */
export function intactRecorder(records: Recorder<IntactRecord>): RequestHandler {
  return (req, res, next) => {
    const url = req.originalUrl;
    const snapshot = (event: IntactRecord['event']) => () => {
      try {
        records.push({
          url,
          event,
          remoteAddress: remoteAddressOf(req),
          ip: req.ip,
          headersType: typeof req.headers,
          statusCode: res.statusCode,
        });
      } catch (error) {
        records.push({ url, event, remoteAddress: undefined, ip: undefined, headersType: 'unknown', statusCode: res.statusCode, error: String(error) });
      }
    };
    res.once('finish', snapshot('finish'));
    res.once('close', snapshot('close'));
    next();
  };
}

export interface StackOptions {
  /** Extra proxy options. */
  readonly proxy?: Partial<ProxyOptions>;
  /** Requests allowed per minute by express-rate-limit (default 1000). */
  readonly rateLimit?: number;
  /** Mounted after the standard middleware, right before the proxy. */
  readonly beforeProxy?: RequestHandler[];
  /** The body parsers mounted before the proxy (default: json with keepRawBody, urlencoded extended, text). */
  readonly parsers?: RequestHandler[];
  /** pino-http's request id generator (default: pino-http's own counter). */
  readonly genReqId?: (req: IncomingMessage, res: ServerResponse) => string;
}

// The README's recipe: morgan sees the status and length the head announced,
// never whether the body ended; `res.writableFinished` does.
morgan.token('delivered', (_req, res) => (res.writableFinished ? 'whole' : 'cut'));

export async function expressStack(factory: ExpressFactory, target: string, options: StackOptions = {}): Promise<ExpressStack> {
  const app = factory();
  const intact = new Recorder<IntactRecord>();
  const logs = Object.fromEntries(MORGAN_FORMATS.map((format) => [format, new LogLines()])) as Record<MorganFormat, LogLines>;
  const pinoLines = new LogLines();
  const delivered = new LogLines();

  app.use(intactRecorder(intact));
  for (const format of MORGAN_FORMATS) app.use(morgan(format, { stream: logs[format].stream }));
  app.use(morgan(':method :url :status :delivered', { stream: delivered.stream }));
  app.use(pinoHttp({ logger: pino({ level: 'info' }, pinoLines.stream), ...(options.genReqId === undefined ? {} : { genReqId: options.genReqId }) }));
  app.use(helmet());
  app.use(cors({ origin: [APP_ORIGIN], credentials: true, exposedHeaders: ['x-upstream'] }));
  app.use(rateLimit({ windowMs: 60_000, limit: options.rateLimit ?? 1000, standardHeaders: 'draft-8', legacyHeaders: false }));
  app.use(compression());
  app.use(cookieParser('cookie secret'));
  app.use(session({ secret: 'session secret', name: 'sid', resave: false, saveUninitialized: false }));
  // Counts visits in the session for every proxied request.
  app.use('/api', (req, _res, next) => {
    const data = req.session as unknown as { views?: number };
    data.views = (data.views ?? 0) + 1;
    next();
  });
  for (const parser of options.parsers ?? [factory.json({ verify: keepRawBody }), factory.urlencoded({ extended: true }), factory.text()]) app.use(parser);

  app.get('/session', (req, res) => {
    res.json({ views: (req.session as unknown as { views?: number }).views ?? 0 });
  });
  // A sibling route with its own multipart parser.
  app.post('/upload', multer({ storage: multer.memoryStorage() }).single('f'), (req: Request, res: Response) => {
    const file = req.file;
    res.json({ field: (req.body as Record<string, unknown>).note, size: file?.size ?? null, sha256: file === undefined ? null : sha256(file.buffer) });
  });
  for (const handler of options.beforeProxy ?? []) app.use('/api', handler);
  app.use('/api', proxy({ target, retry: PROXY_RETRY, ...options.proxy }));

  const { url } = await listen(app);
  return { url, morgan: logs, pino: pinoLines, delivered, intact };
}

export interface MorganEntry {
  readonly remoteAddress: string | null;
  readonly method: string;
  readonly url: string;
  readonly status: string;
}

const MORGAN_LINE: Record<MorganFormat, RegExp> = {
  combined: /^(?<remote>\S+) - \S+ \[[^\]]+\] "(?<method>\S+) (?<url>\S+) HTTP\/\d\.\d" (?<status>\d{3}|-) \S+ "[^"]*" "[^"]*"$/,
  common: /^(?<remote>\S+) - \S+ \[[^\]]+\] "(?<method>\S+) (?<url>\S+) HTTP\/\d\.\d" (?<status>\d{3}|-) \S+$/,
  short: /^(?<remote>\S+) \S+ (?<method>\S+) (?<url>\S+) HTTP\/\d\.\d (?<status>\d{3}|-) \S+ - \S+ ms$/,
  tiny: /^(?<method>\S+) (?<url>\S+) (?<status>\d{3}|-) \S+ - \S+ ms$/,
  dev: /^(?<method>\S+) (?<url>\S+) (?<status>\d{3}|-) \S+ ms - \S+$/,
};

export function parseMorgan(format: MorganFormat, line: string): MorganEntry | null {
  const match = MORGAN_LINE[format].exec(stripAnsi(line));
  const groups = match?.groups;
  if (groups === undefined) return null;
  return { remoteAddress: groups.remote ?? null, method: groups.method ?? '', url: groups.url ?? '', status: groups.status ?? '' };
}

/**
 * Waits for every morgan format's line for `method url` and asserts the status the
 * client got (null: no response at all, logged as `-`), and the remote address
 * where the format has one.
 */
export async function expectMorgan(stack: ExpressStack, method: string, url: string, status: number | null): Promise<void> {
  for (const format of MORGAN_FORMATS) {
    const line = await stack.morgan[format].next((l) => {
      const entry = parseMorgan(format, l);
      return entry !== null && entry.method === method && entry.url === url;
    }, `a morgan '${format}' line for ${method} ${url} (lines so far: ${JSON.stringify(stack.morgan[format].items)})`);
    const entry = parseMorgan(format, line);
    expect(entry?.status, `morgan '${format}': ${line}`).toBe(status === null ? '-' : String(status));
    if (format === 'combined' || format === 'common' || format === 'short') {
      expect(entry?.remoteAddress, `morgan '${format}': ${line}`).toMatch(LOOPBACK);
    }
  }
}

export interface PinoHttpLine {
  readonly msg: string;
  readonly req?: { readonly id?: unknown; readonly method?: string; readonly url?: string; readonly remoteAddress?: string };
  readonly res?: { readonly statusCode?: number };
}

/** Waits for pino-http's line for `method url` and asserts the status it logged (null: only the message). */
export async function expectPino(stack: ExpressStack, method: string, url: string, status: number | null, msg = 'request completed'): Promise<PinoHttpLine> {
  const line = await stack.pino.next((l) => {
    const entry = JSON.parse(l) as PinoHttpLine;
    return entry.req?.method === method && entry.req.url === url;
  }, `a pino-http line for ${method} ${url} (lines so far: ${JSON.stringify(stack.pino.items)})`);
  const entry = JSON.parse(line) as PinoHttpLine;
  expect(entry.msg, line).toBe(msg);
  if (status !== null) expect(entry.res?.statusCode, line).toBe(status);
  expect(entry.req?.remoteAddress, line).toMatch(LOOPBACK);
  return entry;
}

/** What every scenario ends with: every logger recorded the client's status, the request was intact, the app still serves. */
export async function expectAftermath(stack: ExpressStack, method: string, url: string, status: number, pinoMsg = 'request completed'): Promise<void> {
  await expectMorgan(stack, method, url, status);
  await expectPino(stack, method, url, status, pinoMsg);
  await expectIntact(stack.intact, url, status);
  await expectStillServing(stack.url);
}

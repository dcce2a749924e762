// Options are validated once, at construction: every mistake is a TypeError
// that names the option and what was expected, and the caller's object is
// never changed.

import { describe, expect, it } from 'vitest';
import { createProxy, DEFAULTS, UpstreamRegistry, type ProxyOptions } from '../src/index.js';

const target = 'http://127.0.0.1:9';

const invalid: [string, unknown, string][] = [
  ['no options', undefined, 'Expected `options` to be an object with at least a `target`, got undefined.'],
  ['a missing target', {}, 'Expected `target` to be an absolute http: or https: URL (string or URL), got undefined.'],
  ['a relative target', { target: '/orders' }, 'Expected `target` to be an absolute http: or https: URL, got the string "/orders".'],
  ['a non-HTTP target', { target: 'ftp://files' }, 'Expected `target` to be an http: or https: URL, got the string "ftp://files".'],
  ['credentials in the target', { target: 'http://u:secret@h' }, 'Expected `target` to be a URL without credentials (send them as a header instead), got the string "[redacted URL]".'],
  ['a query in the target', { target: 'http://h/?a=1' }, 'Expected `target` to be a URL without a query string or fragment, got the string "http://h/?a=1".'],
  ['an empty name', { target, name: '' }, 'Expected `name` to be a non-empty printable ASCII string of at most 100 characters, got the string "".'],
  ['a negative timeout', { target, timeout: { connect: -1 } }, 'Expected `timeout.connect` to be a non-negative finite number of milliseconds (0 turns it off), got -1.'],
  ['a timeout in seconds as a string', { target, timeout: { response: '30s' } }, 'Expected `timeout.response` to be a non-negative finite number of milliseconds (0 turns it off), got the string "30s".'],
  ['an infinite idle timeout', { target, timeout: { idle: Infinity } }, 'Expected `timeout.idle` to be a non-negative finite number of milliseconds (0 turns it off), got Infinity.'],
  ['an unknown timeout', { target, timeout: { read: 5 } }, 'Unknown option `timeout.read`. Known options: connect, response, idle, total, hook, upload, tunnelIdle.'],
  ['a changeOrigin string', { target, changeOrigin: 'yes' }, 'Expected `changeOrigin` to be a boolean, got the string "yes".'],
  ['a failure status out of range', { target, failureStatuses: [503, 999] }, 'Expected `failureStatuses` to be an array of HTTP status codes (100-599), got 999.'],
  ['a status that is not an error', { target, status: 200 }, 'Expected `status` to be an HTTP error status (400-599) or a function of the failure code, got 200.'],
  ['a proxy name with spaces', { target, proxyName: 'my proxy' }, 'Expected `proxyName` to be an RFC 8941 token such as "gateway", got the string "my proxy".'],
  ['a bad request id header', { target, requestIdHeader: 'x id' }, 'Expected `requestIdHeader` to be a header name, got the string "x id".'],
  ['a dispatcher without dispatch()', { target, dispatcher: {} }, 'Expected `dispatcher` to be an undici Dispatcher (Agent, Pool, Client), got an object.'],
  ['a hook that is not a function', { target, hooks: { onFailure: 'log' } }, 'Expected `hooks.onFailure` to be a function, got the string "log".'],
  ['an unknown hook', { target, hooks: { onError: () => undefined } }, 'Unknown option `hooks.onError`. Known options: onFailure, onRetry, onBreakerStateChange, onHostStateChange, onPanic, onStale, onDiscovery.'],
  ['retry that is not an object', { target, retry: 'yes' }, 'Expected `retry` to be an object of retry options or false, got the string "yes".'],
  ['a negative retry count', { target, retry: { retries: -1 } }, 'Expected `retry.retries` to be a whole number from 0 to 10, got -1.'],
  ['a fractional retry count', { target, retry: { retries: 1.5 } }, 'Expected `retry.retries` to be a whole number from 0 to 10, got 1.5.'],
  ['maxDelay below minDelay', { target, retry: { minDelay: 100, maxDelay: 50 } }, 'Expected `retry.maxDelay` to be at least `retry.minDelay` (100), got 50.'],
  ['a factor below 1', { target, retry: { factor: 0.5 } }, 'Expected `retry.factor` to be a number from 1 to 10, got 0.5.'],
  ['a method that is not a token', { target, retry: { methods: ['GET', 'NOT OK'] } }, 'Expected `retry.methods` to be an array of HTTP method names, got an array.'],
  ['a negative replay buffer', { target, retry: { maxBodyBytes: -1 } }, 'Expected `retry.maxBodyBytes` to be a whole number of bytes from 0 to 67108864, got -1.'],
  ['a negative bucket', { target, retry: { budget: { maxTokens: -1 } } }, 'Expected `retry.budget.maxTokens` to be a number from 0 to 1000, got -1.'],
  ['a token ratio of 0', { target, retry: { budget: { tokenRatio: 0 } } }, 'Expected `retry.budget.tokenRatio` to be a number above 0, up to 1, got 0.'],
  ['an unknown budget option', { target, retry: { budget: { percent: 20 } } }, 'Unknown option `retry.budget.percent`. Known options: maxTokens, tokenRatio.'],
  [
    'the former budget shape',
    { target, retry: { budget: { ratio: 0.2 } } },
    '`retry.budget.ratio` is gone: the retry budget is now a token bucket, `{ maxTokens, tokenRatio }` (gRPC\'s retry throttling), because a per-instance floor of retries per second multiplies with the number of instances. See docs/timeouts-retries-breaker.md, Retries.',
  ],
  ['an attempt header with a space', { target, retry: { attemptHeader: 'x attempt' } }, 'Expected `retry.attemptHeader` to be a header name or false, got the string "x attempt".'],
  ['an unknown retry option', { target, retry: { delay: 5 } }, 'Unknown option `retry.delay`. Known options: retries, minDelay, maxDelay, factor, jitter, methods, maxBodyBytes, budget, attemptHeader.'],
  ['breaker that is not an object', { target, breaker: true }, 'Expected `breaker` to be an object of breaker options or false, got true.'],
  ['a threshold over 100 %', { target, breaker: { errorThresholdPercentage: 150 } }, 'Expected `breaker.errorThresholdPercentage` to be a percentage from 1 to 100, got 150.'],
  ['a fractional volume threshold', { target, breaker: { volumeThreshold: 2.5 } }, 'Expected `breaker.volumeThreshold` to be a whole number of attempts (0 or more), got 2.5.'],
  ['a zero reset timeout', { target, breaker: { resetTimeout: 0 } }, 'Expected `breaker.resetTimeout` to be a number of milliseconds from 1 to 3600000, got 0.'],
  ['a zero probe timeout', { target, breaker: { probeTimeout: 0 } }, 'Expected `breaker.probeTimeout` to be a number of milliseconds from 1 to 3600000, got 0.'],
  ['a negative capacity', { target, breaker: { capacity: -1 } }, 'Expected `breaker.capacity` to be a whole number of attempts in flight (0 for no limit), got -1.'],
  ['an opossum timeout', { target, breaker: { timeout: 1000 } }, 'Unknown option `breaker.timeout`. Known options: errorThresholdPercentage, volumeThreshold, resetTimeout, probeTimeout, rollingCountTimeout, capacity.'],
  ['trustProxy that is not a boolean', { target, trustProxy: 'yes' }, 'Expected `trustProxy` to be a boolean, got the string "yes".'],
  ['a negative body limit', { target, limits: { requestBodyBytes: -1 } }, 'Expected `limits.requestBodyBytes` to be a whole number of bytes (0 for no limit), got -1.'],
  ['a negative upload timeout', { target, timeout: { upload: -1 } }, 'Expected `timeout.upload` to be a non-negative finite number of milliseconds (0 turns it off), got -1.'],
  ['a fractional buffer size', { target, limits: { requestBufferBytes: 1.5 } }, 'Expected `limits.requestBufferBytes` to be a whole number of bytes (0 to stream at once), got 1.5.'],
  ['an unknown limit', { target, limits: { headerBytes: 1 } }, 'Unknown option `limits.headerBytes`. Known options: requestBodyBytes, responseBodyBytes, requestBufferBytes.'],
  ['an option key that is not a name', { target, timeout: { 'con nect': 1 } }, 'Unknown option `timeout."con nect"`. Known options: connect, response, idle, total, hook, upload, tunnelIdle.'],
  ['a registry that is not one', { target, registry: {} }, 'Expected `registry` to be an UpstreamRegistry, got an object.'],
  ['a misspelt option', { target, timeouts: {} }, 'Unknown option `timeouts`. Known options: target, name, timeout, changeOrigin, failureStatuses, status, proxyName, requestIdHeader, dispatcher, retry, breaker, registry, trustProxy, limits, hooks, balance, outlierDetection, healthCheck, slowStart, pathRewrite, headers, rewriteRedirects, cookieDomainRewrite, cookiePathRewrite, transformResponse, staleIfError, adaptiveConcurrency, deadline, hedge.'],
];

describe('option validation', () => {
  it.each(invalid)('rejects %s', (_name, options, message) => {
    expect(() => createProxy(options as ProxyOptions)).toThrow(new TypeError(message));
  });

  it('accepts a URL object, and zero to turn a timer off', async () => {
    const proxy = createProxy({ target: new URL('https://orders.test/v1'), timeout: { connect: 0, total: 0 } });
    expect(proxy.upstream).toBe('https://orders.test');
    await proxy.close();
  });

  it('keys the upstream by name when one is given', async () => {
    const proxy = createProxy({ target, name: 'orders' });
    expect(proxy.upstream).toBe('orders');
    await proxy.close();
  });

  it('never mutates the caller’s options', async () => {
    const options = { target, timeout: { connect: 10 }, failureStatuses: [503] };
    const snapshot = structuredClone(options);
    const proxy = createProxy(options);
    expect(options).toStrictEqual(snapshot);
    await proxy.close();
  });

  it('publishes its defaults', () => {
    expect(DEFAULTS).toStrictEqual({
      timeout: { connect: 5_000, response: 30_000, idle: 30_000, total: 0, hook: 10_000, upload: 30_000 },
      changeOrigin: true,
      failureStatuses: [502, 503, 504],
      status: 502,
      proxyName: 'resilient-proxy',
      requestIdHeader: 'x-request-id',
      retry: {
        retries: 2,
        minDelay: 50,
        maxDelay: 1_000,
        factor: 2,
        jitter: true,
        methods: ['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'],
        maxBodyBytes: 1024 * 1024,
        budget: { maxTokens: 10, tokenRatio: 0.1 },
        attemptHeader: 'x-attempt-count',
      },
      trustProxy: false,
      limits: { requestBodyBytes: 0, responseBodyBytes: 0, requestBufferBytes: 1024 * 1024 },
      breaker: { errorThresholdPercentage: 50, volumeThreshold: 100, resetTimeout: 5_000, probeTimeout: 2_000, rollingCountTimeout: 10_000, capacity: 0 },
      balance: 'peak-ewma',
      outlierDetection: { consecutiveFailures: 5, baseEjectionTime: 30_000, maxEjectionTime: 300_000, maxEjectionPercent: 50 },
      healthCheck: { path: '/healthz', interval: 10_000, timeout: 2_000, healthyThreshold: 2, unhealthyThreshold: 2 },
      slowStart: 10_000,
      rewriteRedirects: true,
      transformMaxBytes: 1024 * 1024,
      dns: { type: 'A', protocol: 'http:', refresh: { min: 1_000, max: 30_000 }, timeout: 2_000 },
      discoverBackoff: { min: 1_000, max: 30_000 },
      staleIfError: { maxStale: 300_000, maxStaleOverridesOrigin: false, maxEntryBytes: 1024 * 1024, maxBytes: 32 * 1024 * 1024 },
      adaptiveConcurrency: { initial: 20, min: 20, max: 200, smoothing: 0.2, rttTolerance: 1.5, longWindow: 600, queueSize: 4, minWindowTime: 1000, maxWindowTime: 1000, windowSize: 10 },
      deadline: { header: 'x-request-timeout-ms', grpcHeader: 'grpc-timeout', format: 'ms', margin: 10, minimum: 10, trustClient: false },
      hedge: { delay: { percentile: 95, min: 10, max: 1000 }, maxHedges: 1, budget: 0.1, methods: ['GET', 'HEAD'] },
    });
    expect(Object.isFrozen(DEFAULTS)).toBe(true);
  });
});

describe('proxies that share a name', () => {
  it('share state when their settings agree', async () => {
    const registry = new UpstreamRegistry();
    const first = createProxy({ target: 'http://orders.test/v1', name: 'shared', registry, breaker: { capacity: 5 } });
    const second = createProxy({ target: 'http://orders.test/v2', name: 'shared', registry, breaker: { capacity: 5 } });
    expect(registry.snapshot().map((upstream) => [upstream.upstream, upstream.capacity])).toStrictEqual([['shared', 5]]);
    await Promise.all([first.close(), second.close()]);
    registry.close();
  });

  it.each([
    { other: { target: 'http://payments.test' }, message: 'another target (http://orders.test, not http://payments.test)' },
    { other: { breaker: { capacity: 10 } }, message: 'another `breaker.capacity` (5, not 10)' },
    { other: { breaker: false as const }, message: 'a breaker (here `breaker: false`)' },
  ])('throw a TypeError naming `name` when one differs: $message', async ({ other, message }) => {
    const registry = new UpstreamRegistry();
    const first = createProxy({ target: 'http://orders.test', name: 'orders', registry, breaker: { capacity: 5 } });
    const build = () => createProxy({ target: 'http://orders.test', name: 'orders', registry, breaker: { capacity: 5 }, ...other });
    expect(build).toThrow(TypeError);
    expect(build).toThrow(`Expected \`name\` "orders" to stand for one upstream with one set of settings in its registry, but it is already used with ${message}.`);
    await first.close();
    registry.close();
  });
});

// A user migrating pastes their old options: each gets what replaces it here
// and where the migration guide is, not only "unknown".
const GUIDE = 'See the migration guide (docs/migration.md).';
const migrating: [string, Record<string, unknown>, string][] = [
  ['http-proxy-middleware `router`', { router: { 'a.example': 'http://a' } }, 'Unknown option `router` → here: a target list, `target: [url1, url2]`'],
  ['http-proxy-middleware `ws`', { ws: true }, "Unknown option `ws` → here: `proxy.upgrade(req, socket, head)` on the server's 'upgrade' event"],
  ['http-proxy-middleware `on.proxyReq`', { on: { proxyReq: () => undefined } }, 'Unknown option `on.proxyReq` → here: `headers.request`'],
  ['http-proxy-middleware `on.error`', { on: { error: () => undefined } }, 'Unknown option `on.error` → here: nothing to write: the error contract is sent for you; log from `hooks.onFailure`'],
  ['http-proxy-middleware `on.proxyRes`', { on: { proxyRes: () => undefined } }, 'Unknown option `on.proxyRes` → here: `headers.response` for headers, `transformResponse` for the body'],
  ['http-proxy-middleware `pathFilter`', { pathFilter: '/api' }, 'Unknown option `pathFilter` → here: mount the proxy on a path'],
  ['http-proxy-middleware `xfwd`', { xfwd: true }, 'Unknown option `xfwd` → here: nothing: X-Forwarded-For, -Proto and -Host are always set'],
  ['http-proxy-middleware `proxyTimeout`', { proxyTimeout: 5000 }, 'Unknown option `proxyTimeout` → here: `timeout.response` (until the response head) and `timeout.idle`'],
  ['http-proxy-middleware `logger`', { logger: console }, 'Unknown option `logger` → here: nothing: the proxy logs nothing itself'],
  ['http-proxy-middleware `followRedirects`', { followRedirects: true }, 'Unknown option `followRedirects` → here: nothing yet: a 3xx goes to the client as sent'],
  ['http-proxy-middleware 2 `onProxyReq`', { onProxyReq: () => undefined }, 'Unknown option `onProxyReq` → here: `headers.request`'],
  ['http-proxy-middleware 2 `onError`', { onError: () => undefined }, 'Unknown option `onError` → here: nothing to write: the error contract is sent for you'],
  ['http-proxy-middleware `headers` as a flat map', { headers: { 'x-api-key': 'k' } }, 'Unknown option `headers."x-api-key"` → here: `headers` holds `request` and `response` here: request headers go under `headers.request`'],
  ['http-proxy `secure: false`', { secure: false }, 'Unknown option `secure` → here: an undici dispatcher: `dispatcher: new Agent({ connect: { … } })`'],
  ['express-http-proxy `proxyReqPathResolver`', { proxyReqPathResolver: () => '/' }, 'Unknown option `proxyReqPathResolver` → here: `pathRewrite: (path, req) => path`'],
  ['express-http-proxy `userResDecorator`', { userResDecorator: () => '' }, 'Unknown option `userResDecorator` → here: `transformResponse: { match, transform, maxBytes }`'],
  ['express-http-proxy `proxyErrorHandler`', { proxyErrorHandler: () => undefined }, 'Unknown option `proxyErrorHandler` → here: nothing to write: the error contract is sent for you'],
  ['@fastify/http-proxy `upstream`', { upstream: 'http://a' }, 'Unknown option `upstream` → here: `target`'],
  ['@fastify/http-proxy `prefix` (outside Fastify)', { prefix: '/api' }, 'Unknown option `prefix` → here: mount the proxy on a path'],
  ['@fastify/http-proxy `rewritePrefix`', { rewritePrefix: '/v2' }, 'Unknown option `rewritePrefix` → here: the path of `target`'],
  ['@fastify/http-proxy `replyOptions`', { replyOptions: {} }, 'Unknown option `replyOptions` → here: `headers.response` for headers, `transformResponse` for the body'],
];

describe('options of other proxies name their replacement', () => {
  it.each(migrating)('%s', (_name, options, start) => {
    let thrown: unknown;
    try {
      createProxy({ target, ...options });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(TypeError);
    const message = (thrown as TypeError).message;
    expect(message.startsWith(start), message).toBe(true);
    expect(message.endsWith(GUIDE), message).toBe(true);
  });

  it('`timeout` as one number (http-proxy, express-http-proxy) names the per-phase object', () => {
    expect(() => createProxy({ target, timeout: 5000 } as unknown as ProxyOptions)).toThrow(
      new TypeError(`Expected \`timeout\` to be an object like { connect, response, idle, total }, got 5000 → here: per-phase timeouts: \`timeout: { connect, response, idle, total }\` in milliseconds; a whole-exchange bound is \`timeout.total\`, a socket timeout is your server's own (\`server.requestTimeout\`). ${GUIDE}`),
    );
  });

  // Every option and event these proxies document, as their types declare them
  // (http-proxy-middleware 3's Options and OnProxyEvent, @types/http-proxy's
  // ServerOptions, http-proxy-middleware 2's legacy options, express-http-proxy's
  // README, @fastify/http-proxy's and @fastify/reply-from's options): each one
  // that is not also an option here names its replacement and the guide.
  const ours = new Set(['target', 'changeOrigin', 'pathRewrite', 'cookieDomainRewrite', 'cookiePathRewrite', 'headers', 'timeout', 'prefix', 'websocket']);
  const theirs = [
    ...['pathFilter', 'router', 'plugins', 'ejectPlugins', 'logger'],
    ...['forward', 'agent', 'ssl', 'ws', 'xfwd', 'secure', 'toProxy', 'prependPath', 'ignorePath', 'localAddress', 'preserveHeaderKeyCase', 'auth', 'hostRewrite', 'autoRewrite', 'protocolRewrite', 'proxyTimeout', 'followRedirects', 'selfHandleResponse', 'buffer', 'method', 'ca'],
    ...['onError', 'onProxyRes', 'onProxyReq', 'onProxyReqWs', 'onOpen', 'onClose', 'logProvider', 'logLevel'],
    ...['proxyReqPathResolver', 'forwardPath', 'forwardPathAsync', 'filter', 'userResDecorator', 'intercept', 'limit', 'memoizeHost', 'userResHeaderDecorator', 'skipToNextHandlerFilter', 'proxyErrorHandler', 'proxyReqOptDecorator', 'decorateRequest', 'https', 'preserveHostHdr', 'parseReqBody', 'reqAsBuffer', 'reqBodyEncoding', 'proxyReqBodyDecorator'],
    ...['upstream', 'rewritePrefix', 'proxyPayloads', 'preHandler', 'beforeHandler', 'preValidation', 'handler', 'preRewrite', 'config', 'replyOptions', 'wsUpstream', 'wsClientOptions', 'wsServerOptions', 'wsHooks', 'wsReconnect', 'routes', 'httpMethods', 'constraints', 'internalRewriteLocationHeader'],
    ...['base', 'cacheURLs', 'disableCache', 'http', 'http2', 'undici', 'balancedPoolOptions', 'contentTypesToEncode', 'retryMethods', 'maxRetriesOn503', 'retryDelay', 'disableRequestLogging', 'globalAgent', 'destroyAgent'],
  ].filter((name) => !ours.has(name));
  const events = ['error', 'proxyReq', 'proxyReqWs', 'proxyRes', 'open', 'close', 'start', 'end', 'econnreset'];

  it.each([
    ...theirs.map((name): [string, Record<string, unknown>] => [name, { [name]: true }]),
    ...events.map((event): [string, Record<string, unknown>] => [`on.${event}`, { on: { [event]: () => undefined } }]),
  ])('every option and event of the other proxies names its replacement: %s', (name, options) => {
    let thrown: unknown;
    try {
      createProxy({ target, ...options });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(TypeError);
    const message = (thrown as TypeError).message;
    expect(message.startsWith(`Unknown option \`${name}\` → here: `), message).toBe(true);
    expect(message.endsWith(GUIDE), message).toBe(true);
  });

  it('a misspelling that is no other proxy\'s option still lists the known options', () => {
    expect(() => createProxy({ target, retires: 3 } as unknown as ProxyOptions)).toThrow(/^Unknown option `retires`\. Known options: target, name, /);
  });
});

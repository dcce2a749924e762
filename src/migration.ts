// What replaces, here, an option of the proxies people migrate from
// (http-proxy-middleware 2 and 3 and the http-proxy options it passes on,
// express-http-proxy, @fastify/http-proxy): a user who pastes their old
// options learns what to write instead, not only that the key is unknown.

/** Where the full table is; every hint points there. */
export const MIGRATION_GUIDE = 'docs/migration.md';

const DISPATCHER = 'an undici dispatcher: `dispatcher: new Agent({ connect: { … } })`';
const MOUNT = 'mount the proxy on a path (`app.use(\'/api\', proxy)`; Fastify: register\'s `prefix`), or call it only for the requests you want';
const TRANSFORM = '`headers.response` for headers, `transformResponse` for the body';
const FAILURE_HOOK = 'nothing to write: the error contract is sent for you; log from `hooks.onFailure`';
const UPGRADE = '`proxy.upgrade(req, socket, head)` on the server\'s \'upgrade\' event (Fastify: `websocket: true`)';
const LOGGING = 'nothing: the proxy logs nothing itself; log from `hooks.onFailure`, `hooks.onRetry` and `hooks.onBreakerStateChange`';
const TIMING = 'your request logger (pino-http, morgan, koa-logger) sees the proxied status and duration; the `resilient-proxy:exchange:start` and `:end` diagnostics channels time each request';
const TUNNEL_EVENTS = 'nothing yet per tunnel: open tunnels are counted in `registry.snapshot()` (`tunnels`), and a failed handshake reaches `hooks.onFailure` with `upgrade: true`';
const FASTIFY_ROUTE = 'Fastify hooks and options of your own: register the plugin inside a plugin of yours that adds them (`instance.addHook(\'preHandler\', …)`)';
const NOT_NEEDED_BODY = 'not needed: a body a parser already read is forwarded (from `req.rawBody`, or rebuilt from `req.body`)';

/** Option path (as `checkKeys` names it) → what replaces it here. */
const HINTS: ReadonlyMap<string, string> = new Map([
  // http-proxy-middleware 3 and http-proxy.
  ['router', 'a target list, `target: [url1, url2]`, for several hosts of one service; for a target chosen per request, one proxy per upstream chosen in a middleware of your own'],
  ['pathFilter', MOUNT],
  ['ws', UPGRADE],
  ['xfwd', 'nothing: X-Forwarded-For, -Proto and -Host are always set (kept from the client only with `trustProxy: true`)'],
  ['proxyTimeout', '`timeout.response` (until the response head) and `timeout.idle` (gaps in the body)'],
  ['followRedirects', 'nothing yet: a 3xx goes to the client as sent, and the client follows it'],
  ['logger', LOGGING],
  ['on', '`headers.request` for `on.proxyReq`, `headers.response` or `transformResponse` for `on.proxyRes`, `hooks.onFailure` for `on.error`'],
  ['on.proxyReq', '`headers.request` (a function may be async), and `pathRewrite`'],
  ['on.proxyRes', TRANSFORM],
  ['on.error', FAILURE_HOOK],
  ['on.econnreset', '`hooks.onFailure` (code `UPSTREAM_RESET`)'],
  ['on.proxyReqWs', `${UPGRADE}; \`headers.request\` applies to the handshake`],
  ['on.start', TIMING],
  ['on.end', TIMING],
  ['on.open', TUNNEL_EVENTS],
  ['on.close', TUNNEL_EVENTS],
  ['onProxyReq', '`headers.request` (a function may be async), and `pathRewrite`'],
  ['onProxyRes', TRANSFORM],
  ['onProxyReqWs', `${UPGRADE}; \`headers.request\` applies to the handshake`],
  ['onError', FAILURE_HOOK],
  ['onOpen', TUNNEL_EVENTS],
  ['onClose', TUNNEL_EVENTS],
  ['logProvider', LOGGING],
  ['logLevel', LOGGING],
  ['method', 'nothing yet: the client\'s method goes upstream'],
  ['secure', DISPATCHER],
  ['ca', DISPATCHER],
  ['ssl', DISPATCHER],
  ['agent', DISPATCHER],
  ['localAddress', DISPATCHER],
  ['autoRewrite', '`rewriteRedirects` (on by default)'],
  ['hostRewrite', '`rewriteRedirects` (on by default)'],
  ['protocolRewrite', '`rewriteRedirects` (on by default)'],
  ['selfHandleResponse', '`transformResponse: { match, transform, maxBytes }`'],
  ['buffer', NOT_NEEDED_BODY],
  ['prependPath', 'nothing: the target\'s path is always prepended'],
  ['ignorePath', 'nothing yet: the request path is appended to the target\'s; a `pathRewrite` function can reduce it to `/`'],
  ['auth', 'a header: set `authorization` with `headers.request`'],
  ['preserveHeaderKeyCase', 'nothing yet: header names go out in lower case'],
  ['forward', 'nothing yet: no mirroring to a second target'],
  ['toProxy', 'nothing yet: the target is the origin server, reached directly'],
  ['plugins', 'options and `hooks`: there is no plugin system'],
  ['ejectPlugins', 'nothing: error handling is built in, and the error contract is always on'],
  // express-http-proxy.
  ['proxyReqPathResolver', '`pathRewrite: (path, req) => path`'],
  ['forwardPath', '`pathRewrite: (path, req) => path`'],
  ['forwardPathAsync', '`pathRewrite: (path, req) => path`'],
  ['decorateRequest', '`headers.request` (a function may be async)'],
  ['intercept', '`transformResponse: { match, transform, maxBytes }`'],
  ['proxyReqOptDecorator', '`headers.request` (a function may be async)'],
  ['proxyReqBodyDecorator', 'nothing yet: the request body goes upstream as it came'],
  ['userResDecorator', '`transformResponse: { match, transform, maxBytes }`'],
  ['userResHeaderDecorator', '`headers.response`'],
  ['proxyErrorHandler', FAILURE_HOOK],
  ['filter', MOUNT],
  ['skipToNextHandlerFilter', 'nothing: the proxy answers every request it gets; a failure status becomes the error contract through `failureStatuses`'],
  ['limit', '`limits.requestBodyBytes` (bytes)'],
  ['parseReqBody', NOT_NEEDED_BODY],
  ['reqAsBuffer', NOT_NEEDED_BODY],
  ['reqBodyEncoding', NOT_NEEDED_BODY],
  ['preserveHostHdr', '`changeOrigin: false`'],
  ['https', 'the scheme of `target` (`https://…`)'],
  ['memoizeHost', 'nothing: `target` is fixed; change hosts at run time with `setTargets`'],
  // @fastify/http-proxy and @fastify/reply-from.
  ['upstream', '`target`'],
  ['base', '`target`'],
  ['prefix', MOUNT],
  ['rewritePrefix', 'the path of `target` (`target: \'http://orders:8080/v2\'`), or `pathRewrite`'],
  ['replyOptions', `${TRANSFORM}; \`rewriteRedirects\` for Location`],
  ['proxyPayloads', 'nothing: request bodies are streamed as they arrive'],
  ['undici', DISPATCHER],
  ['http', DISPATCHER],
  ['http2', 'nothing yet: upstreams are called over HTTP/1.1'],
  ['websocket', UPGRADE],
  ['httpMethods', 'nothing: every method is proxied'],
  ['internalRewriteLocationHeader', '`rewriteRedirects` (on by default)'],
  ['preHandler', FASTIFY_ROUTE],
  ['beforeHandler', FASTIFY_ROUTE],
  ['preValidation', FASTIFY_ROUTE],
  ['config', FASTIFY_ROUTE],
  ['constraints', FASTIFY_ROUTE],
  ['routes', 'nothing: every path under the prefix is proxied; register the plugin once per prefix'],
  ['handler', 'nothing: the plugin is the handler; wrap it in a plugin of your own for another'],
  ['preRewrite', '`pathRewrite: (path, req) => path`'],
  ['wsUpstream', '`target` (the same upstream serves WebSocket: `websocket: true`)'],
  ['wsClientOptions', DISPATCHER],
  ['wsServerOptions', 'nothing: no WebSocket server runs in the proxy; frames pass through untouched'],
  ['wsHooks', 'nothing yet per message: frames pass through untouched; a failed handshake reaches `hooks.onFailure` with `upgrade: true`'],
  ['wsReconnect', 'nothing: the client reconnects; a tunnel that ends closes both sides'],
  ['cacheURLs', 'nothing: there is no URL cache to size'],
  ['disableCache', 'nothing: there is no URL cache to turn off'],
  ['balancedPoolOptions', `a target list for several hosts, or ${DISPATCHER}`],
  ['contentTypesToEncode', 'nothing: request bodies are streamed as they arrive'],
  ['retryMethods', '`retry.methods`'],
  ['maxRetriesOn503', '`retry.retries` (503 is in `failureStatuses`)'],
  ['retryDelay', '`retry.minDelay`, `retry.maxDelay`, `retry.factor`'],
  ['disableRequestLogging', 'nothing: the proxy logs nothing itself; Fastify\'s own request log covers proxied requests'],
  ['globalAgent', DISPATCHER],
  ['destroyAgent', 'nothing: `proxy.close()` closes the pool the proxy made; a `dispatcher` you pass is yours to close'],
]);

/** What replaces option `path` here, or `null` when it is no known proxy's option. */
export function migrationHint(path: string): string | null {
  // http-proxy-middleware's `headers` is a flat map of request headers.
  if (path.startsWith('headers.')) return '`headers` holds `request` and `response` here: request headers go under `headers.request`';
  return HINTS.get(path) ?? null;
}

/** The hint for a `timeout` given as one number, as http-proxy and express-http-proxy take it. */
export const TIMEOUT_NUMBER_HINT = 'per-phase timeouts: `timeout: { connect, response, idle, total }` in milliseconds; a whole-exchange bound is `timeout.total`, a socket timeout is your server\'s own (`server.requestTimeout`)';

// The response head as the client gets it: redirects and links that name a
// host of the group moved to the client's origin and mount path, cookies'
// Domain and Path rewritten, then the user's `headers.response` (which never
// frames the body: Content-Length and Transfer-Encoding are the proxy's).
// Built once per proxy; a response with nothing to rewrite costs a few
// property reads.

import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { RewriteHookError } from '../contract/errors.js';
import type { ResolvedOptions } from '../options.js';
import type { UpstreamGroup } from '../upstream/group.js';
import { showClientUrl } from './client-url.js';
import { clientResponseHeaders } from './headers.js';
import { checkedHeaders, clientView, patchHeaders, plainHeaders, rewriteCookieAttribute, rewriteLink, rewriteRedirect, rewriteRefresh, type HeaderMap } from './rewrite.js';

/** What the rewriter needs to know of the request. */
export interface ResponseSide {
  readonly req: IncomingMessage;
  /** Where the proxy is mounted (`/api`), '' at the root. */
  readonly mountPath: string;
  /** The request target as the client sent it: what `req.url` shows while `headers.response` and `transformResponse` run. */
  readonly clientUrl: string;
}

export type ResponseRewriter = (statusCode: number, headers: OutgoingHttpHeaders, side: ResponseSide) => OutgoingHttpHeaders;

/** The headers that carry a URL a client follows. */
const REDIRECT_HEADERS = ['location', 'content-location', 'refresh', 'link'] as const;

/** The rewriter for one proxy, or `null` when it has nothing to do. */
export function responseRewriter(config: ResolvedOptions, group: UpstreamGroup): ResponseRewriter | null {
  const { rewriteRedirects, cookieDomainRewrite, cookiePathRewrite, responseHeaders, trustProxy, basePath } = config;
  const cookies = cookieDomainRewrite !== false || cookiePathRewrite !== false;
  if (!rewriteRedirects && !cookies && responseHeaders === null) return null;

  return (statusCode, headers, side) => {
    if (rewriteRedirects && REDIRECT_HEADERS.some((name) => headers[name] !== undefined)) {
      const view = clientView(side.req, trustProxy, side.mountPath);
      if (view !== null) {
        const hosts = group.origins;
        const move = (url: string): string => rewriteRedirect(url, hosts, basePath, view);
        for (const name of REDIRECT_HEADERS) {
          const rewrite = name === 'refresh' ? (value: string) => rewriteRefresh(value, move) : name === 'link' ? (value: string) => rewriteLink(value, move) : move;
          const fields: Record<string, OutgoingHttpHeaders[string]> = headers;
          const value = fields[name];
          // A header sent twice is rewritten twice: no copy keeps the internal host.
          if (typeof value === 'string') fields[name] = rewrite(value);
          else if (Array.isArray(value)) fields[name] = value.map(rewrite);
        }
      }
    }
    if (cookies && headers['set-cookie'] !== undefined) {
      const values = headers['set-cookie'];
      headers['set-cookie'] = (Array.isArray(values) ? values : [String(values as string | number)]).map((cookie) =>
        rewriteCookieAttribute(rewriteCookieAttribute(cookie, 'domain', cookieDomainRewrite), 'path', cookiePathRewrite),
      );
    }
    if (responseHeaders === null) return headers;
    let hooked: HeaderMap;
    if (typeof responseHeaders !== 'function') hooked = patchHeaders(plainHeaders(headers), responseHeaders);
    else {
      let returned: unknown;
      const restore = showClientUrl(side.req, side.clientUrl);
      try {
        returned = responseHeaders(plainHeaders(headers), { statusCode, req: side.req });
      } catch (error) {
        throw new RewriteHookError('The `headers.response` function threw', { cause: error });
      } finally {
        restore();
      }
      hooked = checkedHeaders(returned, 'headers.response');
    }
    // Hop-by-hop headers (Transfer-Encoding among them) stay on their hop,
    // whatever the hook returned.
    return framedAsSent(clientResponseHeaders(hooked), headers);
  };
}

/**
 * `hooked` with the upstream's own `Content-Length`, or none when it sent
 * none: framing is the proxy's alone. A length from a hook that differs from
 * the body sent would let a keep-alive client read the rest of the body as a
 * second response (response splitting).
 */
function framedAsSent(hooked: OutgoingHttpHeaders, upstream: OutgoingHttpHeaders): OutgoingHttpHeaders {
  delete hooked['content-length'];
  const length = upstream['content-length'];
  if (length !== undefined) hooked['content-length'] = length;
  return hooked;
}

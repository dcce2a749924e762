// The response head as the client gets it: redirects that name a host of the
// group moved to the client's origin and mount path, cookies' Domain and Path
// rewritten, then the user's `headers.response` (which never frames the
// body: Content-Length and Transfer-Encoding are the proxy's). Built once per proxy; a
// response with nothing to rewrite costs three property reads.

import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { RewriteHookError } from '../contract/errors.js';
import type { ResolvedOptions } from '../options.js';
import type { UpstreamGroup } from '../upstream/group.js';
import { clientResponseHeaders } from './headers.js';
import { checkedHeaders, clientView, patchHeaders, plainHeaders, rewriteCookieAttribute, rewriteRedirect, rewriteRefresh, type HeaderMap } from './rewrite.js';

/** What the rewriter needs to know of the request. */
export interface ResponseSide {
  readonly req: IncomingMessage;
  /** Where the proxy is mounted (`/api`), '' at the root. */
  readonly mountPath: string;
}

export type ResponseRewriter = (statusCode: number, headers: OutgoingHttpHeaders, side: ResponseSide) => OutgoingHttpHeaders;

const REDIRECT_HEADERS = ['location', 'content-location'] as const;

/** The rewriter for one proxy, or `null` when it has nothing to do. */
export function responseRewriter(config: ResolvedOptions, group: UpstreamGroup): ResponseRewriter | null {
  const { rewriteRedirects, cookieDomainRewrite, cookiePathRewrite, responseHeaders, trustProxy, basePath } = config;
  const cookies = cookieDomainRewrite !== false || cookiePathRewrite !== false;
  if (!rewriteRedirects && !cookies && responseHeaders === null) return null;

  return (statusCode, headers, side) => {
    if (rewriteRedirects && (headers.location !== undefined || headers['content-location'] !== undefined || headers.refresh !== undefined)) {
      const view = clientView(side.req, trustProxy, side.mountPath);
      if (view !== null) {
        const hosts = group.origins;
        const move = (url: string): string => rewriteRedirect(url, hosts, basePath, view);
        for (const name of REDIRECT_HEADERS) {
          const value = headers[name];
          if (typeof value === 'string') headers[name] = move(value);
        }
        if (typeof headers.refresh === 'string') headers.refresh = rewriteRefresh(headers.refresh, move);
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
      try {
        returned = responseHeaders(plainHeaders(headers), { statusCode, req: side.req });
      } catch (error) {
        throw new RewriteHookError('The `headers.response` function threw', { cause: error });
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

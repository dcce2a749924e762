// The response head as the client gets it: redirects that name a host of the
// group moved to the client's origin and mount path, cookies' Domain and Path
// rewritten, then the user's `headers.response`. Built once per proxy; a
// response with nothing to rewrite costs three property reads.

import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { RewriteHookError } from '../contract/errors.js';
import type { ResolvedOptions } from '../options.js';
import type { UpstreamGroup } from '../upstream/group.js';
import { clientResponseHeaders } from './headers.js';
import { checkedHeaders, clientView, patchHeaders, plainHeaders, rewriteCookieAttribute, rewriteRedirect, rewriteRefresh } from './rewrite.js';

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
    if (typeof responseHeaders !== 'function') return patchHeaders(plainHeaders(headers), responseHeaders);
    let returned: unknown;
    try {
      returned = responseHeaders(plainHeaders(headers), { statusCode, req: side.req });
    } catch (error) {
      throw new RewriteHookError('The `headers.response` function threw', { cause: error });
    }
    // Hop-by-hop headers stay on their hop, whatever the hook returned.
    return clientResponseHeaders(checkedHeaders(returned, 'headers.response'));
  };
}

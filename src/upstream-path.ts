// Builds the path sent upstream: the target's path is a prefix, the request's
// path (relative to the mount point in Express) follows. The origin is fixed by
// the dispatcher, so nothing in the request can choose another host.

const ABSOLUTE_FORM = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;

/**
 * `basePath` has no trailing slash. Returns `null` for a request target that
 * cannot be forwarded (asterisk-form, authority-form, garbage).
 */
export function upstreamPath(basePath: string, requestUrl: string | undefined): string | null {
  let path = requestUrl ?? '/';
  if (ABSOLUTE_FORM.test(path)) {
    // absolute-form (RFC 9112 §3.2.2): keep only its path and query.
    try {
      const url = new URL(path);
      path = url.pathname + url.search;
    } catch {
      return null;
    }
  }
  if (!path.startsWith('/')) return null;
  return basePath + path;
}

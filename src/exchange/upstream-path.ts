// Builds the path sent upstream: the target's path is a prefix, the request's
// path (relative to the mount point in Express) follows. The origin is fixed by
// the dispatcher, so nothing in the request can choose another host.

const ABSOLUTE_FORM = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;
// A `.` or `..` path segment, between slashes or backslashes (some servers
// treat `\` as `/`), or ended by what an upstream may take as the segment's
// end: `;` (Tomcat and Jetty resolve `..;` as `..`), `?` or `#`.
const DOT_SEGMENT = /(?:^|[/\\])\.{1,2}(?:[/\\;?#]|$)/;
// Characters an upstream may decode before it resolves the path.
const DECODED: Readonly<Record<string, string>> = { '2e': '.', '2f': '/', '5c': '\\', '3b': ';', '3f': '?', '23': '#' };

/**
 * Whether the path holds a dot-segment, written plainly or through
 * percent-encoding, once or several times (`%252e`: an upstream or a
 * framework before it may decode twice), or a NUL byte (`..%00`: C code
 * behind the upstream ends the string there). Forwarded under the target's
 * path prefix, such a path could climb out of it once the upstream resolves it.
 */
function hasDotSegment(path: string): boolean {
  if (!path.includes('.') && !path.includes('%')) return false;
  let text = path.split('?', 1)[0] ?? '';
  // Each pass shortens the text, so this ends.
  while (/%25/i.test(text)) text = text.replace(/%25/gi, '%');
  if (/%00/.test(text)) return true;
  return DOT_SEGMENT.test(text.replace(/%(2e|2f|5c|3b|3f|23)/gi, (_, hex: string) => DECODED[hex.toLowerCase()] ?? ''));
}

/**
 * `basePath` has no trailing slash. Returns `null` for a request target that
 * cannot be forwarded: asterisk-form, authority-form, garbage, or a path with
 * dot-segments (rejected rather than resolved, so that no encoding trick can
 * reach outside the target's path).
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
  if (!path.startsWith('/') || hasDotSegment(path)) return null;
  return basePath + path;
}

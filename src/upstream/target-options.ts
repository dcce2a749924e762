// The `target` option for hosts known now: one URL, or a list of hosts of
// one service (what `setTargets` takes too), and its check.

import { checkKeys, fail, isPlainObject, positive } from '../option-checks.js';
import type { TargetSpec } from './group.js';

/** One host of a group with a weight (default `1`). */
export interface WeightedTarget {
  url: string | URL;
  weight?: number;
}

/** Hosts known now: one URL, or a list (what `setTargets` takes). */
export type StaticTarget = string | URL | readonly (string | URL | WeightedTarget)[];

function resolveTarget(value: unknown): URL {
  let url: URL;
  if (value instanceof URL) url = new URL(value.href);
  else if (typeof value === 'string') {
    try {
      url = new URL(value);
    } catch {
      fail('target', 'an absolute http: or https: URL', value);
    }
  } else fail('target', 'an absolute http: or https: URL (string or URL)', value);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') fail('target', 'an http: or https: URL', value);
  if (url.username !== '' || url.password !== '') {
    fail('target', 'a URL without credentials (send them as a header instead)', '[redacted URL]');
  }
  if (url.search !== '' || url.hash !== '') fail('target', 'a URL without a query string or fragment', value);
  return url;
}

/** The hosts of `target`: one URL, or a list sharing scheme and path prefix. */
export function resolveTargets(value: unknown): { first: URL; targets: TargetSpec[] } {
  if (!Array.isArray(value)) {
    const url = resolveTarget(value);
    return { first: url, targets: [{ origin: url.origin, weight: 1 }] };
  }
  if (value.length === 0) fail('target', 'a URL or a non-empty list of URLs', value);
  const urls: URL[] = [];
  const targets: TargetSpec[] = [];
  value.forEach((entry: unknown, index) => {
    let url: URL;
    let weight = 1;
    if (isPlainObject(entry) && !(entry instanceof URL)) {
      checkKeys(`target[${index}]`, entry, ['url', 'weight']);
      url = resolveTarget(entry.url);
      weight = positive(`target[${index}].weight`, entry.weight, 1, 'a whole number from 1 to 1000', (n) => Number.isInteger(n) && n >= 1 && n <= 1000);
    } else url = resolveTarget(entry);
    const first = urls[0];
    if (first !== undefined && (url.protocol !== first.protocol || basePathOf(url) !== basePathOf(first))) {
      fail('target', `a list of URLs that share one scheme and path prefix (like ${first.protocol}//…${basePathOf(first)})`, url.href);
    }
    if (targets.some((target) => target.origin === url.origin)) fail('target', 'a list of distinct hosts', `${url.origin} twice`);
    urls.push(url);
    targets.push({ origin: url.origin, weight });
  });
  return { first: urls[0] as URL, targets };
}

export function basePathOf(url: URL): string {
  return url.pathname.replace(/\/+$/, '');
}

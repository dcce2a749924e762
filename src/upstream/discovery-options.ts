// The `target` option for discovered hosts: `{ dns }` (A, AAAA or SRV
// records) or `{ discover }` (any registry), their defaults and their check.

import { Resolver } from 'node:dns/promises';
import { checkKeys, fail, isPlainObject, optionalString, positive } from '../option-checks.js';
import type { Discover } from './discovery.js';
import { dnsDiscover, dnsSource, type ResolvedDnsTarget } from './dns.js';

export const DISCOVERY_DEFAULTS = Object.freeze({
  dns: Object.freeze({ type: 'A', protocol: 'http:', refresh: Object.freeze({ min: 1_000, max: 30_000 }), timeout: 2_000 }),
  discoverBackoff: Object.freeze({ min: 1_000, max: 30_000 }),
});

/** A discovered target, checked. */
export interface ResolvedDiscovery {
  /** For people: `dns A orders.internal:8080 via 127.0.0.1:5353`, `discover`. */
  readonly source: string;
  /** What two proxies of one upstream must share: the DNS settings, or the `discover` function. */
  readonly identity: unknown;
  readonly discover: Discover;
  readonly backoff: { readonly min: number; readonly max: number };
  readonly dns: ResolvedDnsTarget | null;
}

const DNS_NAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_][A-Za-z0-9_-]{0,62})*\.?$/;

function resolveBounds(option: string, value: unknown, defaults: { readonly min: number; readonly max: number }): { min: number; max: number } {
  if (value === undefined) return { ...defaults };
  if (!isPlainObject(value)) fail(option, 'an object like { min, max } (milliseconds)', value);
  checkKeys(option, value, ['min', 'max']);
  const expected = 'a number of milliseconds from 1 to 2147483647';
  const inRange = (n: number): boolean => n >= 1 && n <= 2_147_483_647;
  const min = positive(`${option}.min`, value.min, defaults.min, expected, inRange);
  const max = positive(`${option}.max`, value.max, Math.max(min, defaults.max), expected, inRange);
  if (max < min) fail(`${option}.max`, `at least \`${option}.min\` (${min})`, max);
  return { min, max };
}

/** The scheme and path prefix every discovered host shares, as a URL on `host` (for logs). */
function discoveredBase(protocol: unknown, path: unknown, host: string): URL {
  if (protocol !== undefined && protocol !== 'http:' && protocol !== 'https:') fail('target.protocol', "'http:' or 'https:'", protocol);
  if (path !== undefined && (typeof path !== 'string' || (path !== '' && !path.startsWith('/')))) fail('target.path', "a path prefix starting with '/' (or '')", path);
  const base = new URL(`${(protocol as string | undefined) ?? DISCOVERY_DEFAULTS.dns.protocol}//${host}`);
  if (typeof path === 'string' && path !== '') {
    const withPath = new URL(path, base);
    if (withPath.search !== '' || withPath.hash !== '' || withPath.pathname !== path) fail('target.path', 'a path prefix without a query string, fragment or dot segment', path);
    return withPath;
  }
  return base;
}

function resolveDnsTarget(value: Record<string, unknown>): { base: URL; discovery: ResolvedDiscovery } {
  checkKeys('target', value, ['dns', 'type', 'port', 'protocol', 'path', 'servers', 'refresh', 'timeout']);
  const dns = optionalString('target.dns', value.dns, DNS_NAME, 'a DNS name such as "orders.internal"') as string;
  const type = value.type ?? DISCOVERY_DEFAULTS.dns.type;
  if (type !== 'A' && type !== 'AAAA' && type !== 'SRV') fail('target.type', "'A', 'AAAA' or 'SRV'", type);
  let port: number | null = null;
  if (type === 'SRV') {
    if (value.port !== undefined) fail('target.port', 'absent for SRV records (each record carries its port)', value.port);
  } else port = positive('target.port', value.port ?? Number.NaN, 0, 'a port number from 1 to 65535 (required for A and AAAA records)', (n) => Number.isInteger(n) && n >= 1 && n <= 65_535);
  let servers: readonly string[] | null = null;
  if (value.servers !== undefined) {
    const expected = 'a non-empty list of DNS server addresses like "127.0.0.1:5353" or "[::1]:53"';
    if (!Array.isArray(value.servers) || value.servers.length === 0 || !value.servers.every((server) => typeof server === 'string')) fail('target.servers', expected, value.servers);
    servers = Object.freeze([...value.servers]);
    try {
      new Resolver().setServers(servers);
    } catch {
      fail('target.servers', expected, value.servers);
    }
  }
  const refresh = Object.freeze(resolveBounds('target.refresh', value.refresh, DISCOVERY_DEFAULTS.dns.refresh));
  const timeout = positive('target.timeout', value.timeout, DISCOVERY_DEFAULTS.dns.timeout, 'a number of milliseconds from 1 to 60000', (n) => n >= 1 && n <= 60_000);
  const base = discoveredBase(value.protocol, value.path, port === null ? dns : `${dns}:${port}`);
  const target: ResolvedDnsTarget = Object.freeze({ dns, type, port, protocol: base.protocol as 'http:' | 'https:', servers, refresh, timeout });
  const source = dnsSource(target);
  return { base, discovery: Object.freeze({ source, identity: JSON.stringify(target), discover: dnsDiscover(target), backoff: refresh, dns: target }) };
}

function resolveDiscoverTarget(value: Record<string, unknown>, name: string | null): { base: URL; discovery: ResolvedDiscovery } {
  checkKeys('target', value, ['discover', 'protocol', 'path', 'backoff']);
  if (typeof value.discover !== 'function') fail('target.discover', 'a function returning an async iterable of host lists', value.discover);
  // Nothing else names the upstream: its shared state needs a key, and its logs a name.
  if (name === null) fail('name', 'set with `target.discover` (it keys the shared breaker, budget and hosts)', undefined);
  const base = discoveredBase(value.protocol, value.path, 'discovered.invalid');
  const backoff = Object.freeze(resolveBounds('target.backoff', value.backoff, DISCOVERY_DEFAULTS.discoverBackoff));
  return { base, discovery: Object.freeze({ source: 'discover', identity: value.discover, discover: value.discover as Discover, backoff, dns: null }) };
}

/** A discovered target (`{ dns }` or `{ discover }`), or `null` for hosts known now. */
export function resolveDiscovery(value: unknown, name: string | null): { base: URL; discovery: ResolvedDiscovery } | null {
  if (!isPlainObject(value) || value instanceof URL) return null;
  if ('dns' in value) return resolveDnsTarget(value);
  if ('discover' in value) return resolveDiscoverTarget(value, name);
  return null;
}

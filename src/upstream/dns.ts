// The DNS discovery source: a name's A, AAAA or SRV records, re-resolved on
// their TTL within refresh bounds, as a `Discover` function. Every query has
// its own timeout; a failure (timeout, NXDOMAIN, no record) is thrown, so the
// runner keeps the last good list and retries after its backoff.

import { Resolver } from 'node:dns/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Discover, DiscoveredTarget } from './discovery.js';

/**
 * `target: { dns }`: the group's hosts are the addresses a name resolves to.
 * Each A or AAAA record is one host on `port`; each SRV record of the lowest
 * priority is one host on the record's port, with the record's weight, at the
 * addresses of its target name (asked of the same servers).
 */
export interface DnsTarget {
  /** The name to resolve, e.g. `'orders.internal'` or `'_http._tcp.orders.service.consul'`. */
  dns: string;
  /** The records to ask for. Default `'A'`. */
  type?: 'A' | 'AAAA' | 'SRV';
  /** The port of every host, for A and AAAA (required); SRV records carry their own. */
  port?: number;
  /** The scheme of every host. Default `'http:'`. */
  protocol?: 'http:' | 'https:';
  /** The path prefix of every request. Default `''` (none). */
  path?: string;
  /** The DNS servers to ask (`'127.0.0.1:5353'`, `'[::1]:53'`). Default: the system's (`/etc/resolv.conf`). */
  servers?: readonly string[];
  /**
   * When to resolve again, in ms: after the answer's TTL, but no sooner than
   * `min` and no later than `max`. SRV answers carry no TTL in Node's API:
   * their target addresses' TTLs are used. After a failure the name is asked
   * again after `min`, doubling up to `max`. Default `{ min: 1000, max: 30000 }`.
   */
  refresh?: { min?: number; max?: number };
  /** How long one query may take, in ms (one try). Default `2000`. */
  timeout?: number;
}

export interface ResolvedDnsTarget {
  readonly dns: string;
  readonly type: 'A' | 'AAAA' | 'SRV';
  readonly port: number | null;
  readonly protocol: 'http:' | 'https:';
  readonly servers: readonly string[] | null;
  readonly refresh: { readonly min: number; readonly max: number };
  readonly timeout: number;
}

/** One answer: the hosts and how long it may be kept, in seconds. */
interface Answer {
  readonly hosts: DiscoveredTarget[];
  readonly ttl: number;
}

/** SRV weights go up to 65535, a group's to 1000: scaled down, proportions kept. */
const MAX_WEIGHT = 1000;

export class DnsAnswerError extends Error {
  readonly code = 'ENODATA';
}

function urlOf(protocol: string, address: string, port: number): string {
  return `${protocol}//${address.includes(':') ? `[${address}]` : address}:${port}`;
}

async function addresses(resolver: Resolver, name: string, type: 'A' | 'AAAA'): Promise<{ address: string; ttl: number }[]> {
  const found = type === 'A' ? await resolver.resolve4(name, { ttl: true }) : await resolver.resolve6(name, { ttl: true });
  if (found.length === 0) throw new DnsAnswerError(`No ${type} record for ${name}.`);
  return found;
}

async function resolveOnce(resolver: Resolver, target: ResolvedDnsTarget): Promise<Answer> {
  const { dns, protocol } = target;
  if (target.type !== 'SRV') {
    const found = await addresses(resolver, dns, target.type);
    const port = target.port as number;
    // Sorted: servers rotate their answers, and an order is no change.
    const urls = [...new Set(found.map((record) => urlOf(protocol, record.address, port)))].sort();
    return { hosts: urls, ttl: Math.min(...found.map((record) => record.ttl)) };
  }
  const records = await resolver.resolveSrv(dns);
  if (records.length === 0) throw new DnsAnswerError(`No SRV record for ${dns}.`);
  // RFC 2782: the lowest priority is used; the others are backups.
  const priority = Math.min(...records.map((record) => record.priority));
  const chosen = records.filter((record) => record.priority === priority);
  const heaviest = Math.max(...chosen.map((record) => record.weight));
  const weights = new Map<string, number>();
  let ttl = Number.POSITIVE_INFINITY;
  for (const record of chosen) {
    let found: { address: string; ttl: number }[];
    try {
      found = await addresses(resolver, record.name, 'A');
    } catch {
      found = await addresses(resolver, record.name, 'AAAA');
    }
    // Weight 0 is "rarely", not "never" (RFC 2782): the least share a host can have.
    const weight = Math.max(1, heaviest > MAX_WEIGHT ? Math.round((record.weight * MAX_WEIGHT) / heaviest) : record.weight);
    for (const { address, ttl: recordTtl } of found) {
      const url = urlOf(protocol, address, record.port);
      weights.set(url, Math.min(MAX_WEIGHT, (weights.get(url) ?? 0) + weight));
      ttl = Math.min(ttl, recordTtl);
    }
  }
  return { hosts: [...weights].sort(([a], [b]) => (a < b ? -1 : 1)).map(([url, weight]) => ({ url, weight })), ttl };
}

/** The `Discover` function of a DNS target: resolves, yields, sleeps for the TTL within the bounds, again. */
export function dnsDiscover(target: ResolvedDnsTarget): Discover {
  return async function* resolveDns(signal: AbortSignal) {
    // One try with the timeout: a lost answer is retried by the runner's backoff, not waited out several times over.
    const resolver = new Resolver({ timeout: target.timeout, tries: 1 });
    if (target.servers !== null) resolver.setServers(target.servers);
    const cancel = (): void => resolver.cancel();
    signal.addEventListener('abort', cancel, { once: true });
    try {
      while (!signal.aborted) {
        const { hosts, ttl } = await resolveOnce(resolver, target);
        yield hosts;
        const wait = Math.min(target.refresh.max, Math.max(target.refresh.min, ttl * 1000));
        await sleep(wait, undefined, { signal, ref: false });
      }
    } finally {
      signal.removeEventListener('abort', cancel);
    }
  };
}

/** How the source is shown in the snapshot and events. */
export function dnsSource(target: ResolvedDnsTarget): string {
  const where = target.port === null ? target.dns : `${target.dns}:${target.port}`;
  return `dns ${target.type} ${where}${target.servers === null ? '' : ` via ${target.servers.join(' ')}`}`;
}

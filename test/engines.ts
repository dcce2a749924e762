// The real engines the fleet tests run against (bench/engines.ts, shared with
// bench/fleet.ts): each started for one test and stopped after it.

import { startDnsmasq as start, startRedis as startServer, type DnsRecords, type Dnsmasq, type RedisServer } from '../bench/engines.js';
import { onCleanup } from './support.js';

export type { DnsRecords, Dnsmasq, RedisServer };

/** A dnsmasq authoritative for `.test`, stopped after the test (see bench/engines.ts). */
export async function startDnsmasq(records: DnsRecords, ttl?: number): Promise<Dnsmasq> {
  const dns = await start(records, ttl);
  onCleanup(() => dns.close());
  return dns;
}

/** A redis-server keeping nothing on disk, stopped after the test (see bench/engines.ts). */
export async function startRedis(maxmemory?: number): Promise<RedisServer> {
  const redis = await startServer(maxmemory);
  onCleanup(() => redis.close());
  return redis;
}

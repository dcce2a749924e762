// bench/fleet.ts's figures as markdown: the block between `<!-- fleet:start -->`
// and `<!-- fleet:end -->` in BENCHMARKS.md and docs/many-instances.md, from
// bench/results/fleet.json. Self-contained: types, formatting and tables.

/** bench/fleet.ts's results, as written to bench/results/fleet.json. */
export interface FleetResults {
  readonly date: string;
  readonly node: string;
  readonly seconds: number;
  readonly rate: number;
  readonly runs: readonly {
    readonly fleet: number;
    readonly outage: string;
    readonly config: string;
    readonly clientRequests: number;
    readonly upstreamRequests: number;
    readonly ratio: number;
    readonly clientErrors: number;
  }[];
  readonly churn: {
    readonly rate: number;
    readonly ttl: number;
    readonly holdMs: number;
    readonly replicaDelayMs: number;
    readonly runs: readonly {
      readonly fleet: number;
      readonly sent: number;
      readonly answered200: number;
      readonly errors: number;
      readonly changes: readonly {
        readonly change: string;
        readonly reachedAllMs: number;
        readonly reachedMedianMs: number;
        readonly inFlightOnRemoved: number | null;
        readonly dnsFailures: number;
      }[];
    }[];
  };
  readonly stale: {
    readonly rate: number;
    readonly seconds: number;
    readonly paths: number;
    readonly runs: readonly {
      readonly fleet: number;
      readonly store: string;
      readonly sent: number;
      readonly staleShare: readonly number[];
      readonly errors: number;
      readonly lookupTimeouts: number | null;
    }[];
  };
  readonly cost: {
    readonly rounds: number;
    readonly seconds: number;
    readonly connections: number;
    readonly paths: number;
    readonly phases: readonly {
      readonly phase: string;
      readonly sides: readonly { readonly store: string; readonly rps: number; readonly cpuUs: number; readonly non200: number; readonly lookupTimeouts: number }[];
      readonly rpsRatio: number;
      readonly cpuRatio: number;
      readonly rpsRatios: readonly number[];
      readonly cpuRatios: readonly number[];
    }[];
  };
}

const percent = (share: number): string => `${(share * 100).toFixed(share === 1 || share === 0 ? 0 : 1)} %`;
const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
/** A median ratio with the lowest and highest of the rounds'. */
const ratio = (median: number, rounds: readonly number[]): string => `${median.toFixed(2)}× (${Math.min(...rounds).toFixed(2)}–${Math.max(...rounds).toFixed(2)})`;

function throttlingSection(results: FleetResults): string[] {
  return [
    `**Retry throttling.** ${results.rate} client GET/s for ${results.seconds} s, spread over N instances (each with its own state) in front of one group of three hosts; retries 2.`,
    '',
    '| outage | configuration | N | client requests | upstream requests | upstream / client | client errors |',
    '|---|---|---|---|---|---|---|',
    ...results.runs.map((run) => `| ${run.outage} | ${run.config} | ${run.fleet} | ${run.clientRequests} | ${run.upstreamRequests} | ${run.ratio.toFixed(2)}× | ${run.clientErrors} |`),
  ];
}

function churnSection({ churn }: FleetResults): string[] {
  return [
    `**Replicas added and removed behind \`target: { dns }\`.** ${churn.rate} client GET/s spread over N instances, each following one name on a real dnsmasq (records with a TTL of ${churn.ttl} s; default refresh bounds), replicas answering in ${churn.replicaDelayMs} ms, ${seconds(churn.holdMs)} of steady load before each change and after the last. A removed replica is closed once every instance has dropped it and it has answered what it carried, as a drained pod is. "Reached" runs from the DNS server answering the new records to the instance's group holding exactly the new hosts.`,
    '',
    '| N | requests sent | answered 200 | errors (requests lost) |',
    '|---|---|---|---|',
    ...churn.runs.map((run) => `| ${run.fleet} | ${run.sent} | ${run.answered200} | ${run.errors} |`),
    '',
    '| change | N | reached every instance | reached the median instance | in flight on the removed replica | failed refreshes reported |',
    '|---|---|---|---|---|---|',
    ...churn.runs.flatMap((run) =>
      run.changes.map((change) => `| ${change.change} | ${run.fleet} | ${seconds(change.reachedAllMs)} | ${seconds(change.reachedMedianMs)} | ${change.inFlightOnRemoved ?? '–'} | ${change.dnsFailures} |`),
    ),
  ];
}

function staleSection({ stale }: FleetResults): string[] {
  return [
    `**An outage served stale by every instance.** One instance is asked for ${stale.paths} paths while the three replicas are up (\`Cache-Control: max-age=60\`); then every replica goes down and ${stale.rate} client GET/s for those paths are spread over the whole fleet for ${stale.seconds} s. The other instances never saw a response. Default options besides the store (\`RedisStaleStore\`: \`timeout\` 50 ms, one ioredis client per instance).`,
    '',
    '| N | stale store | requests | served stale: the instance that kept them | served stale: each cold instance (lowest – highest) | errors (the contract) | of which Redis lookups past `timeout` |',
    '|---|---|---|---|---|---|---|',
    ...stale.runs.map((run) => {
      const [warm = 0, ...cold] = run.staleShare;
      const low = Math.min(...cold);
      const high = Math.max(...cold);
      return `| ${run.fleet} | ${run.store === 'redis' ? '`RedisStaleStore` (shared)' : 'memory (default, per process)'} | ${run.sent} | ${percent(warm)} | ${low === high ? percent(low) : `${percent(low)} – ${percent(high)}`} | ${run.errors} | ${run.lookupTimeouts ?? '–'} |`;
    }),
  ];
}

function costSection({ cost }: FleetResults): string[] {
  return [
    `**The Redis store's cost per request**, against the memory store's: two gateway processes side by side against one upstream process (1 KiB responses, \`max-age=60\`, ${cost.paths} paths, each kept once by both before measuring), autocannon with ${cost.connections} keep-alive connections to each, both loaded at the same time so the machine's noise falls on both alike, ${cost.rounds} rounds of ${cost.seconds} s, medians of the rounds (ratios: the median of each round's ratio). *Keep*: the upstream answers and every response is stored (Redis: a \`SET … PX\` sent without being waited for). *Hit*: the upstream is down and every response is served stale (Redis: one \`GET\`, bounded by \`timeout\`). CPU is the gateway process's own time per request (\`process.cpuUsage()\`), which holds on a busy machine where req/s does not; Redis's own process is not counted. Redis on the same machine, which is shared with other work: a lookup past the store's 50 ms \`timeout\` is a miss, answered with the contract.`,
    '',
    '| phase | memory req/s | Redis req/s | req/s, Redis / memory (rounds: lowest–highest) | memory CPU per request | Redis CPU per request | CPU per request, Redis / memory (rounds) | non-200 (memory, Redis) | Redis lookups past `timeout` |',
    '|---|---|---|---|---|---|---|---|---|',
    ...cost.phases.map((phase) => {
      const memory = phase.sides.find((side) => side.store === 'memory');
      const redis = phase.sides.find((side) => side.store === 'redis');
      if (memory === undefined || redis === undefined) return `| ${phase.phase} | – | – | – | – | – | – | – | – |`;
      return `| ${phase.phase} | ${memory.rps} | ${redis.rps} | ${ratio(phase.rpsRatio, phase.rpsRatios)} | ${memory.cpuUs} µs | ${redis.cpuUs} µs | ${ratio(phase.cpuRatio, phase.cpuRatios)} | ${memory.non200}, ${redis.non200} | ${redis.lookupTimeouts} |`;
    }),
  ];
}

/** Every fleet figure: retry throttling, DNS churn, the outage served stale, the Redis store's cost. */
export function fleetBlock(results: FleetResults): string {
  return [
    `Run of ${results.date} on Node ${results.node}, all four parts in one run: \`npx tsx bench/fleet.ts\` (writes bench/results/fleet.json; \`npm run bench:docs\` renders it here). It starts its own dnsmasq and redis-server on free loopback ports (Debian: \`apt-get install dnsmasq redis-server\`).`,
    '',
    ...throttlingSection(results),
    '',
    ...churnSection(results),
    '',
    ...staleSection(results),
    '',
    ...costSection(results),
  ].join('\n');
}

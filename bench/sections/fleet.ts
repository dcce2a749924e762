// README.md's fleet table, between `<!-- fleet:start -->` and `<!-- fleet:end -->`,
// from bench/results/fleet.json (bench/fleet.ts).

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
}

/** The README's fleet table: upstream load as a multiple of client load, per outage, configuration and fleet size. */
export function fleetBlock(results: FleetResults): string {
  const lines = [
    `${results.rate} client GET/s for ${results.seconds} s, spread over N instances (each with its own state) in front of one group of three hosts; retries 2. Run of ${results.date} on Node ${results.node}: \`npx tsx bench/fleet.ts\`.`,
    '',
    '| outage | configuration | N | client requests | upstream requests | upstream / client | client errors |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const run of results.runs) {
    lines.push(`| ${run.outage} | ${run.config} | ${run.fleet} | ${run.clientRequests} | ${run.upstreamRequests} | ${run.ratio.toFixed(2)}× | ${run.clientErrors} |`);
  }
  return lines.join('\n');
}

// The line that says which run a section's figures come from, for the
// benchmarks that write their own bench/results/<name>.json (bench/record.ts).

import type { RunInfo } from '../record.js';

/** "Run of <date> on commit <sha> (Node, cores, load average at the start and the end): `command`." */
export function runLine(run: RunInfo, command: string): string {
  const commit = run.commit === null ? '' : ` on commit ${run.commit}`;
  return (
    `Run of ${run.date}${commit} (Node ${run.node}, ${run.cores} cores, load average ${run.load.start.toFixed(1)} at the start and ` +
    `${run.load.end.toFixed(1)} at the end: other work shared the machine, so read the ratios): \`${command}\`.`
  );
}

/** A same-run comparison's table rows: req/s and p99 of each gateway, and its req/s against the first row's. */
export interface RateRow {
  readonly name: string;
  readonly rps: number;
  readonly p99: number;
}

export function rateTable(rows: readonly RateRow[], against: string, base = rows[0]?.rps ?? 0): string[] {
  return [
    `| gateway | req/s | p99 ms | vs ${against} |`,
    '|---|---|---|---|',
    ...rows.map((row) => `| ${row.name} | ${Math.round(row.rps)} | ${row.p99} | ${(row.rps / base).toFixed(2)}× |`),
  ];
}

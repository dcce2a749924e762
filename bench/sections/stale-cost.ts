// BENCHMARKS.md's stale-on-error cost table, between `<!-- stale-cost:start -->`
// and `<!-- stale-cost:end -->`, from bench/results/stale-cost.json
// (bench/stale-cost.ts).

import type { RunInfo } from '../record.js';
import { rateTable, runLine, type RateRow } from './run-line.js';
import { wrap } from './format.js';

export interface StaleCostResults {
  readonly run: RunInfo;
  readonly rounds: number;
  readonly seconds: number;
  readonly connections: number;
  readonly paths: number;
  /** `staleIfError` off first. */
  readonly rows: readonly RateRow[];
}

export function staleCostBlock(results: StaleCostResults): string {
  return [
    ...wrap(
      `1 KiB storable responses over ${results.paths.toLocaleString('en-US')} paths, ${results.connections} connections, ${results.rounds} interleaved rounds of ${results.seconds} s, medians. ` +
        runLine(results.run, 'npx tsx bench/stale-cost.ts'),
    ),
    '',
    ...rateTable(results.rows, 'off'),
  ].join('\n');
}

// BENCHMARKS.md's rewriting table, between `<!-- rewrite-cost:start -->` and
// `<!-- rewrite-cost:end -->`, from bench/results/rewrite-cost.json
// (bench/rewrite-cost.ts).

import type { RunInfo } from '../record.js';
import { rateTable, runLine, type RateRow } from './run-line.js';
import { wrap } from './format.js';

export interface RewriteCostResults {
  readonly run: RunInfo;
  readonly rounds: number;
  readonly seconds: number;
  readonly connections: number;
  /** The gateway without rewriting first. */
  readonly rows: readonly RateRow[];
}

export function rewriteCostBlock(results: RewriteCostResults): string {
  return [
    ...wrap(
      `1 KiB responses that each carry a \`Location\`, ${results.connections} connections, ${results.rounds} interleaved rounds of ${results.seconds} s, medians. ` +
        runLine(results.run, 'npx tsx bench/rewrite-cost.ts'),
    ),
    '',
    ...rateTable(results.rows, 'no rewrite'),
  ].join('\n');
}

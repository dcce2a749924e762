// BENCHMARKS.md's collapse table, between `<!-- collapse:start -->` and
// `<!-- collapse:end -->`, and the one-line summary in
// docs/timeouts-retries-breaker.md, from bench/results/collapse.json
// (bench/collapse.ts).

import type { RunInfo } from '../record.js';
import { runLine } from './run-line.js';
import { wrap } from './format.js';

interface CollapseResult {
  readonly name: string;
  readonly goodput: number;
  readonly p99: number;
  readonly refused: number;
  readonly timedOut: number;
  readonly limit: string;
  readonly adaptiveLimit: number | null;
}

export interface CollapseResults {
  readonly run: RunInfo;
  readonly workers: number;
  readonly serviceMs: number;
  readonly capacity: number;
  readonly load: number;
  readonly sloMs: number;
  readonly totalMs: number;
  readonly seconds: number;
  readonly results: readonly CollapseResult[];
}

function figures(results: CollapseResults) {
  const fixed = results.results.filter((r) => r.name.startsWith('fixed'));
  const best = fixed.reduce<CollapseResult | undefined>((top, r) => (top === undefined || r.goodput > top.goodput ? r : top), undefined);
  const adaptive = results.results.find((r) => r.adaptiveLimit !== null);
  const none = results.results.find((r) => r.name === 'no limit');
  return { best, adaptive, none };
}

export function collapseBlock(results: CollapseResults): string {
  const { best, adaptive, none } = figures(results);
  const lines = [
    ...wrap(
      `Upstream: ${results.workers} workers of ${results.serviceMs} ms (${results.capacity} req/s) behind an unbounded queue; ` +
        `driven open-loop at ${results.load} req/s for ${results.seconds} s per gateway; SLO ${results.sloMs} ms; \`timeout.total\` ${results.totalMs} ms. ` +
        runLine(results.run, 'npx tsx bench/collapse.ts'),
    ),
    '',
    '| gateway | goodput (200 within SLO, req/s) | p99 of 200s (ms) | refused at once | timed out | limit |',
    '|---|---:|---:|---:|---:|---|',
    ...results.results.map((r) => `| ${r.name.startsWith('adaptive') ? `\`${r.name}\`` : r.name} | ${r.goodput} | ${r.p99} | ${r.refused} | ${r.timedOut} | ${r.limit} |`),
  ];
  if (best !== undefined && adaptive !== undefined && none !== undefined) {
    const ratio = adaptive.goodput / best.goodput;
    lines.push(
      '',
      ...wrap(
        `Target (issue 23): adaptive goodput ≥ 0.9× the best fixed limit chosen in hindsight, and far above none. ` +
          `Measured: ${ratio.toFixed(2)}× the best fixed (${adaptive.goodput} against ${best.goodput} req/s, ${best.name}): ${ratio >= 0.9 ? 'met' : '**missed**'}; ` +
          `${none.goodput === 0 ? 'no limit served nothing within the SLO' : `${(adaptive.goodput / none.goodput).toFixed(0)}× no limit (${none.goodput} req/s)`}. ` +
          `The adaptive limit ended at ${adaptive.adaptiveLimit ?? '?'}.`,
      ),
    );
  }
  return lines.join('\n');
}

/** One sentence for the guide: adaptive against the best fixed limit and against none. */
export function collapseSummary(results: CollapseResults): string {
  const { best, adaptive, none } = figures(results);
  if (best === undefined || adaptive === undefined || none === undefined) return '';
  return wrap(
    `Measured (\`bench/collapse.ts\`, ${results.run.date}): at ${results.load / results.capacity}× the upstream's capacity, the adaptive limit's goodput was ` +
      `${(adaptive.goodput / best.goodput).toFixed(2)}× the best fixed limit chosen in hindsight, and no limit kept ${Math.round((100 * none.goodput) / best.goodput)} % of it.`,
  ).join('\n');
}

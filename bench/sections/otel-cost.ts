// BENCHMARKS.md's observability-cost table, between `<!-- otel-cost:start -->`
// and `<!-- otel-cost:end -->`, from bench/results/otel-cost.json
// (bench/otel-cost.ts).

import type { RunInfo } from '../record.js';
import { runLine, type RateRow } from './run-line.js';
import { wrap } from './format.js';

export interface OtelCostResults {
  readonly run: RunInfo;
  /** The git ref built as contender (0), or null when it was not measured. */
  readonly baseline: string | null;
  readonly rounds: number;
  readonly seconds: number;
  readonly connections: number;
  /** Each row's name starts with its contender's id: `(0)`, `(a)` … `(d)`. */
  readonly rows: readonly RateRow[];
}

/** Within this share of (0), "nobody listening costs nothing" holds. */
const TARGET = 0.01;

export function otelCostBlock(results: OtelCostResults): string {
  const row = (id: string) => results.rows.find((r) => r.name.startsWith(`(${id})`));
  const a = row('a');
  const zero = row('0');
  const base = a?.rps ?? Number.NaN;
  const command = `npx tsx bench/otel-cost.ts${results.baseline === null ? '' : ` --baseline ${results.baseline}`}`;
  const lines = [
    ...wrap(
      `1 KiB responses, bare \`node:http\`, ${results.connections} connections, ${results.rounds} interleaved rounds of ${results.seconds} s, medians. ` +
        runLine(results.run, command),
    ),
    '',
    `| gateway | req/s | p99 ms | vs (a) |`,
    '|---|---|---|---|',
    ...results.rows.map((r) => `| ${r.name} | ${Math.round(r.rps)} | ${r.p99} | ${(r.rps / base).toFixed(2)}× |`),
  ];
  const prose: string[] = [];
  if (zero !== undefined) {
    const ratio = base / zero.rps;
    prose.push(
      `(a) against (0): ${ratio.toFixed(2)}× the requests per second; the target was within ${TARGET * 100} %` +
        (ratio >= 1 - TARGET
          ? `, met: with nobody listening the channels cost nothing measurable${ratio > 1 + TARGET ? " ((a)'s lead over (0) is the spread of one run plus changes made between the two commits, not a gain from the channels)" : ''}.`
          : `, **missed** by this run; a run's spread between two builds is wider than the target, so one run cannot settle it either way.`),
    );
  }
  const c = row('c');
  const d = row('d');
  if (c !== undefined && d !== undefined) {
    prose.push(
      `The instrumentation with traces and metrics serves ${(c.rps / base).toFixed(2)}× the requests of (a), metrics alone with Prometheus ${(d.rps / base).toFixed(2)}×, ` +
        'on loopback where the upstream answers in well under a millisecond; against a real upstream\'s latency the share is far smaller.',
    );
  }
  return [...lines, '', ...wrap(prose.join(' '))].join('\n');
}

// The benchmark's results as data: `npm run bench` writes them to
// bench/results/latest.json, and `npm run bench:docs` renders README.md's
// Performance block and BENCHMARKS.md's tables from that one file. Every
// figure in the docs comes from here; none is typed by hand.

import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const LATEST = join(ROOT, 'bench/results/latest.json');

/** A median over rounds, with the lowest and highest round. */
export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

export type ContenderId = 'a' | 'b' | 'c' | 'd' | 'b2' | 'e' | 'f' | 'g' | 'nginx';

export interface ThroughputRow {
  readonly id: ContenderId;
  readonly label: string;
  /** Requests per second. */
  readonly rps: Spread;
  /** Median p50 latency over rounds, ms. */
  readonly p50: number;
  /** p99 latency, ms. */
  readonly p99: Spread;
}

export interface ThroughputTable {
  /** `1k` or `1m`: the response body size. */
  readonly size: string;
  readonly bytes: number;
  readonly rows: readonly ThroughputRow[];
}

export interface MemoryRow {
  readonly id: ContenderId;
  readonly label: string;
  /** Peak RSS growth over the RSS just before, MiB. */
  readonly download: number;
  readonly upload: number;
}

export type RefusalMeasure = 'head' | 'end' | 'finish';

export interface RefusalRow {
  readonly measure: RefusalMeasure;
  /** Median of the round medians, server-side µs. */
  readonly refusedMicros: number;
  readonly openMicros: number;
}

export interface AmplificationRow {
  readonly label: string;
  /** Upstream requests for all client requests. */
  readonly hits: number;
}

/** What an earlier full run measured, kept to show how much figures move from run to run. */
export interface EarlierRun {
  readonly description: string;
  /** refused ÷ open, per measure. */
  readonly refusalRatios: Partial<Record<RefusalMeasure, number>>;
  /** Peak RSS growth, MiB, for the rows it is known. */
  readonly memory: readonly { readonly id: ContenderId; readonly download?: number; readonly upload?: number }[];
}

export interface BenchResults {
  readonly schema: 1;
  readonly run: {
    /** Which run produced these figures, said for a reader. */
    readonly description: string;
    /** ISO date of the run, when known. */
    readonly date: string | null;
    /** The commit measured, when known. */
    readonly commit: string | null;
    readonly node: string;
    readonly machine: string;
    /** A smoke run proves the benchmark works; its figures mean nothing. */
    readonly smoke: boolean;
    readonly rounds: number;
    readonly seconds: number;
    readonly connections: number;
    readonly nginx: boolean;
    readonly totalSeconds: number | null;
    readonly notes: readonly string[];
  };
  readonly throughput: readonly ThroughputTable[];
  readonly memory: { readonly bytes: number; readonly rows: readonly MemoryRow[] };
  readonly refusal: { readonly requests: number; readonly rounds: number; readonly rows: readonly RefusalRow[] };
  readonly amplification: {
    readonly clientRequests: number;
    readonly concurrency: number;
    readonly retries: number;
    readonly rows: readonly AmplificationRow[];
  };
  /** The full runs before this one, newest first. */
  readonly earlier: readonly EarlierRun[];
}

export function readResults(file = LATEST): BenchResults {
  const results = JSON.parse(readFileSync(file, 'utf8')) as { schema?: unknown };
  if (results.schema !== 1) throw new Error(`${file}: unknown results schema ${String(results.schema)}`);
  return results as BenchResults;
}

export function writeResults(results: BenchResults, file = LATEST): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
}

/** This run, summarised as an earlier run for the next one's file. */
export function asEarlier(results: BenchResults): EarlierRun {
  return {
    description: results.run.description,
    refusalRatios: Object.fromEntries(results.refusal.rows.map((row) => [row.measure, Number((row.refusedMicros / row.openMicros).toFixed(1))])),
    memory: results.memory.rows.map(({ id, download, upload }) => ({ id, download, upload })),
  };
}

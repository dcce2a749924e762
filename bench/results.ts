import { execFileSync } from 'node:child_process';
// The benchmark's results as data: `npm run bench` writes them to
// bench/results/latest.json, and `npm run bench:docs` renders README.md's
// Performance block and BENCHMARKS.md's tables from that one file. Every
// figure in the docs comes from here; none is typed by hand.

import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const LATEST = join(ROOT, 'bench/results/latest.json');

/** The commit measured, and whether the work tree differed from it in what is measured (the library, the bench, the dependencies); `null` outside git. */
export function measuredCommit(): string | null {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const measured = ['src', 'bench/*.ts', 'bench/sections', 'package.json', 'package-lock.json'];
    const dirty = execFileSync('git', ['status', '--porcelain', '--', ...measured], { cwd: ROOT, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${head} with uncommitted changes` : head;
  } catch {
    return null;
  }
}

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

// The fault benchmark (`npm run bench:faults`, bench/faults.ts) writes its
// own file, bench/results/faults.json; `npm run bench:docs` renders
// BENCHMARKS.md's fault section from it.

export const FAULTS = join(ROOT, 'bench/results/faults.json');

export type FaultScenarioId = 'S1' | 'S2' | 'S3' | 'S4' | 'S5' | 'S6' | 'S7';
export type Balance = 'least-request' | 'round-robin' | 'peak-ewma';

/** One contender in one scenario, over every round. */
export interface FaultRow {
  /** `rp` (the defaults), `rp-single`, `rp-<balance>`, `nginx` or `hpm`. */
  readonly id: string;
  readonly label: string;
  /** resilient-proxy's balance mode for a group, `null` for other contenders and a single target. */
  readonly balance: Balance | null;
  /** Rounds measured. */
  readonly rounds: number;
  /** Client requests over all rounds: responses plus socket errors and timeouts. */
  readonly requests: number;
  /** Responses other than 2xx, over all rounds. */
  readonly non2xx: number;
  /** Socket errors and timeouts at the client, over all rounds. */
  readonly errors: number;
  /** Responses by status, over all rounds. */
  readonly statuses: Readonly<Record<string, number>>;
  /** Responses per second (every status), over rounds. */
  readonly rps: Spread;
  /** Median p50 latency over rounds, ms (every status). */
  readonly p50: number;
  /** p99 latency, ms (every status). */
  readonly p99: Spread;
  /** Requests each replica received, over all rounds. */
  readonly replicas: readonly number[];
  /** Connection attempts (SYNs) to each replica's port, over all rounds; `null` when they were not counted. */
  readonly connects: readonly number[] | null;
  /** Non-2xx responses that carried `application/problem+json`, when the scenario checks the contract. */
  readonly problemJson: number | null;
  /** The `code` of those problem+json bodies, by count. */
  readonly codes: Readonly<Record<string, number>> | null;
  /** S7 only: how the contender let the killed replica go and took it back. */
  readonly recovery?: Recovery;
}

/**
 * S7, one value per round, in ms (`null`: did not happen within the run, or
 * not observable for this contender).
 */
export interface Recovery {
  /** From the kill to resilient-proxy's `onHostStateChange` taking the replica out of rotation (or showing it `failing`); `null` for other contenders. */
  readonly outMs: readonly (number | null)[];
  /** From the kill to the last connection attempt on its closed port before the restart (tcpdump): when the contender stopped trying it. */
  readonly lastAttemptMs: readonly (number | null)[];
  /** Connection attempts on its closed port while it was down; `null` when not counted. */
  readonly attemptsWhileDown: readonly (number | null)[];
  /** From the restart to the first request the replica received. */
  readonly firstRequestMs: readonly (number | null)[];
  /** How long each run lasted, s: until 1 s after that first request, or the scenario's cap. */
  readonly runSeconds: readonly number[];
}

export interface FaultScenario {
  readonly id: FaultScenarioId;
  readonly title: string;
  /** Seconds per run (S7: the cap; a run ends 1 s after the restarted replica's first request). */
  readonly seconds: number;
  /** S7: when the replica is killed after the run starts, and for how long, ms. */
  readonly killAtMs?: number;
  readonly downMs?: number;
  /** Each replica's mode during the runs. */
  readonly modes: readonly string[];
  readonly rows: readonly FaultRow[];
}

export interface FaultResults {
  readonly schema: 1;
  readonly run: {
    readonly description: string;
    readonly date: string | null;
    readonly commit: string | null;
    readonly node: string;
    readonly machine: string;
    /** A smoke run proves the benchmark works; its figures mean nothing. */
    readonly smoke: boolean;
    readonly rounds: number;
    readonly connections: number;
    /** A flapping replica's half-period, ms. */
    readonly flapMs: number;
    /** The slow replica's delay, ms. */
    readonly slowMs: number;
    /** resilient-proxy's default `balance` in the build measured. */
    readonly defaultBalance: Balance;
    readonly nginx: string | null;
    /** Whether connection attempts were counted (tcpdump on loopback). */
    readonly connectsCounted: boolean;
    /** CPU load average (1 min) when the run started and ended. */
    readonly load: readonly [number, number];
    /** Share of the machine's CPU time used by processes outside the benchmark during the run (0–1), when known: noise. */
    readonly otherCpu: number | null;
    readonly totalSeconds: number | null;
    readonly notes: readonly string[];
  };
  readonly scenarios: readonly FaultScenario[];
}

export function readFaultResults(file = FAULTS): FaultResults {
  const results = JSON.parse(readFileSync(file, 'utf8')) as { schema?: unknown; scenarios?: unknown };
  if (results.schema !== 1 || !Array.isArray(results.scenarios)) throw new Error(`${file}: not a fault benchmark results file (schema 1)`);
  return results as FaultResults;
}

export function writeFaultResults(results: FaultResults, file = FAULTS): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
}

// The benchmarks that are not part of `npm run bench` write their results
// here, to bench/results/<name>.json, with what a reader needs to judge the
// run: date, commit, Node, cores and the machine's load while it ran (these
// are side-by-side ratios, which a busy machine moves less than absolute
// figures). A smoke run writes nothing: its figures mean nothing.

import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './results.js';

export interface RunInfo {
  readonly date: string;
  readonly commit: string | null;
  readonly node: string;
  readonly cores: number;
  /** The one-minute load average when the run started and when it ended. */
  readonly load: { readonly start: number; readonly end: number };
  readonly seconds: number;
}

function commit(): string | null {
  try {
    return execFileSync('git', ['rev-parse', '--short=7', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
  } catch {
    return null;
  }
}

/** Starts recording a run: call at its start; `finish` stamps it at its end. */
export function startRun(): { finish(): RunInfo } {
  const started = performance.now();
  const load = loadavg()[0] ?? 0;
  return {
    finish: () => ({
      date: new Date().toISOString().slice(0, 10),
      commit: commit(),
      node: process.version,
      cores: availableParallelism(),
      load: { start: Number(load.toFixed(1)), end: Number((loadavg()[0] ?? 0).toFixed(1)) },
      seconds: Math.round((performance.now() - started) / 1000),
    }),
  };
}

/** Writes bench/results/<name>.json, unless this is a smoke run. */
export function writeRecord(name: string, smoke: boolean, record: { readonly run: RunInfo } & Record<string, unknown>): void {
  if (smoke) return;
  const dir = join(ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${name}.json`), `${JSON.stringify(record, null, 2)}\n`);
  console.log(`wrote bench/results/${name}.json`);
}

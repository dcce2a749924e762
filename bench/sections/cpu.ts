// BENCHMARKS.md's "CPU time per request" section, from bench/results/cpu.json
// (written by bench/cpu.ts) and bench/results/profile.json (bench/cpu.ts --profile).

export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

export interface CpuPair {
  readonly id: string;
  readonly title: string;
  readonly ours: string;
  readonly theirs: string;
  /** The target for `rpsRatio.median` (ours over theirs), or null for a pair that only shows a cost. */
  readonly target: number | null;
  /** CPU µs per request, ours over theirs, per window: median and spread. */
  readonly cpuRatio: Spread;
  /** Requests served in the same window, ours over theirs. */
  readonly rpsRatio: Spread;
  /** Medians over the windows, µs of CPU per request: noisy (the machine is shared), the ratios are not. */
  readonly oursMicros: number;
  readonly theirsMicros: number;
}

export interface CpuResults {
  readonly date: string;
  readonly commit: string;
  readonly node: string;
  readonly machine: string;
  readonly windows: number;
  readonly seconds: number;
  readonly connections: number;
  readonly totalSeconds: number;
  readonly notes: readonly string[];
  readonly pairs: readonly CpuPair[];
}

export interface ProfileRow {
  readonly fn: string;
  /** Self time per request, µs. */
  readonly micros: number;
}

export interface ProfileResults {
  readonly date: string;
  readonly node: string;
  readonly seconds: number;
  readonly rows: readonly {
    readonly label: string;
    readonly requests: number;
    /** Sampled CPU time per request (idle excluded), µs. */
    readonly micros: number;
    /** The same, by where the code comes from. */
    readonly origins: readonly ProfileRow[];
    /** The functions with the most self time. */
    readonly top: readonly ProfileRow[];
  }[];
}

const ratio = (value: number): string => `${value.toFixed(2)}×`;
const range = (s: Spread): string => `${ratio(s.median)} (${ratio(s.min)}–${ratio(s.max)})`;

function verdict(pair: CpuPair): string {
  if (pair.target === null) return '';
  if (pair.target < 1) return pair.rpsRatio.median >= pair.target && pair.cpuRatio.median <= 2 - pair.target ? `within ${((1 - pair.target) * 100).toFixed(0)} %: met` : `within ${((1 - pair.target) * 100).toFixed(0)} %: **missed**`;
  return `≥ ${ratio(pair.target)}: ${pair.rpsRatio.median >= pair.target ? 'met' : '**missed**'}`;
}

export function cpuBlock(results: CpuResults, profile: ProfileResults | null): string {
  const lines = [
    `Run on ${results.date.slice(0, 10)}, commit ${results.commit}, Node ${results.node}, ${results.machine}: ${results.windows} windows of ${results.seconds} s per pair, ${results.connections} connections to each contender, both contenders pinned to one core and loaded at once from the other (${results.totalSeconds} s in all).`,
    '',
    '| Pair | CPU per request, ours ÷ theirs: median (min–max) | req/s in the same windows, ours ÷ theirs | µs per request (ours / theirs) | Target (req/s) |',
    '| --- | --- | --- | --- | --- |',
    ...results.pairs.map((p) => `| ${p.title}: ${p.ours} ÷ ${p.theirs} | ${range(p.cpuRatio)} | ${range(p.rpsRatio)} | ${p.oursMicros.toFixed(1)} / ${p.theirsMicros.toFixed(1)} | ${verdict(p)} |`),
  ];
  for (const note of results.notes) lines.push('', `*${note}*`);
  if (profile !== null) {
    const us = (r: ProfileRow): string => r.micros.toFixed(2);
    lines.push(
      '',
      `### Where the time goes: \`node --cpu-prof\``,
      '',
      `Each contender alone, profiled at 250 µs intervals over ${profile.seconds} s of the same load after a warm-up; sampled self time per request, idle excluded (sampling undercounts short functions; compare rows, not with the figures above). By where the code comes from:`,
      '',
      '| Contender | µs per request | Largest parts, µs per request |',
      '| --- | --- | --- |',
      ...profile.rows.map((row) => `| ${row.label} | ${row.micros.toFixed(1)} | ${row.origins.slice(0, 6).map((o) => `${o.fn} ${us(o)}`).join(', ')} |`),
    );
    for (const row of profile.rows) {
      lines.push('', `<details><summary>${row.label}: top self time, µs per request</summary>`, '', '| µs | Function |', '| --- | --- |', ...row.top.map((r) => `| ${us(r)} | \`${r.fn}\` |`), '', '</details>');
    }
  }
  return lines.join('\n');
}

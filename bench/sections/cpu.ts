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
  /** The target for `rpsRatio.median` (ours over theirs), or for `cpuRatio.median` with `targetOn: 'cpu'`; null for a pair that only shows a cost. */
  readonly target: number | null;
  readonly targetOn?: 'rps' | 'cpu';
  /** CPU µs per request, ours over theirs, per window: median and spread. */
  readonly cpuRatio: Spread;
  /** Requests served in the same window, ours over theirs. */
  readonly rpsRatio: Spread;
  /** Medians over the windows, µs of CPU per request: noisy (the machine is shared), the ratios are not. */
  readonly oursMicros: number;
  readonly theirsMicros: number;
  /** Medians over the windows of the share of time each side's event loop was not waiting in its poll (Node's eventLoopUtilization): waiting for the load, or for the core it shares. Absent in runs before it was recorded. */
  readonly oursBusy?: number;
  readonly theirsBusy?: number;
}

export interface CpuResults {
  readonly date: string;
  readonly commit: string;
  readonly node: string;
  readonly machine: string;
  readonly windows: number;
  /** Fresh process pairs the windows were spread over (absent: one). */
  readonly lives?: number;
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

/** A ratio to three places, where two would round a miss into a meet. */
const exact = (value: number): string => `${value.toFixed(3)}×`;

/** The pair's target: CPU per request at most `target` (`targetOn: 'cpu'`), req/s at least `target`, or for a cost ("within 3 %", target < 1) req/s at least `target` and CPU at most its mirror. */
function verdict(pair: CpuPair): string {
  if (pair.target === null) return '';
  // Runs before `targetOn` was recorded: the pair against the older build had issue 20's CPU target.
  if ((pair.targetOn ?? (pair.id === 'old' ? 'cpu' : 'rps')) === 'cpu') {
    return `CPU ≤ ${ratio(pair.target)} (${exact(pair.cpuRatio.median)}): ${pair.cpuRatio.median <= pair.target ? 'met' : '**missed**'}`;
  }
  if (pair.target < 1) {
    const met = pair.rpsRatio.median >= pair.target && pair.cpuRatio.median <= 2 - pair.target;
    return `within ${((1 - pair.target) * 100).toFixed(0)} % (req/s ${exact(pair.rpsRatio.median)}, CPU ${exact(pair.cpuRatio.median)}): ${met ? 'met' : '**missed**'}`;
  }
  return `req/s ≥ ${ratio(pair.target)} (${exact(pair.rpsRatio.median)}): ${pair.rpsRatio.median >= pair.target ? 'met' : '**missed**'}`;
}

/** Each side's event loop busy share, when the run recorded it. */
const loopBusy = (p: CpuPair): string => (p.oursBusy === undefined || p.theirsBusy === undefined ? '–' : `${p.oursBusy.toFixed(2)} / ${p.theirsBusy.toFixed(2)}`);

function pairTable(pairs: readonly CpuPair[], rps: string): string[] {
  return [
    `| Pair | CPU per request, ours ÷ theirs: median (min–max) | ${rps}, ours ÷ theirs | µs per request (ours / theirs), each side's median: not the ratio's | Event loop busy (ours / theirs) | Target |`,
    '| --- | --- | --- | --- | --- | --- |',
    ...pairs.map((p) => `| ${p.title}: ${p.ours} ÷ ${p.theirs} | ${range(p.cpuRatio)} | ${range(p.rpsRatio)} | ${p.oursMicros.toFixed(1)} / ${p.theirsMicros.toFixed(1)} | ${loopBusy(p)} | ${verdict(p)} |`),
  ];
}

const times = (value: number): string => `${value.toFixed(2)}×`;

/**
 * What each method says of the `node:http` target (req/s ≥ 1.25× the bare
 * undici proxy), which issue 20 set from its own figure for a3c2e01.
 */
function nodeVerdict(simultaneous: CpuResults, alone: CpuResults, profile: ProfileResults | null, sequential: { ratio: number; size: string } | null): string[] {
  const find = (results: CpuResults, id: string): CpuPair | undefined => results.pairs.find((p) => p.id === id);
  const [node, nodeAlone, oldBare, oldBareAlone, old, oldAlone] = [find(simultaneous, 'node'), find(alone, 'node'), find(simultaneous, 'old-bare'), find(alone, 'old-bare'), find(simultaneous, 'old'), find(alone, 'old')];
  if (node === undefined || nodeAlone === undefined || node.target === null) return [];
  const met = node.rpsRatio.median >= node.target;
  const lines = [
    `**The \`node:http\` target, req/s ≥ ${times(node.target)} the bare undici proxy's, by the method issue 20 asks for (the simultaneous pairs above): ${met ? 'met' : 'missed'}**, ${exact(node.rpsRatio.median)} (CPU per request ${exact(node.cpuRatio.median)}).`,
    `The other ways of measuring it: one contender at a time (the table above) ${exact(nodeAlone.rpsRatio.median)}, with rounds from ${times(nodeAlone.rpsRatio.min)} to ${times(nodeAlone.rpsRatio.max)}`,
  ];
  const profiled = (label: string): number | undefined => profile?.rows.find((r) => r.label === label)?.requests;
  const [ours, bare] = [profiled(node.ours), profiled(node.theirs)];
  const others: string[] = [];
  if (ours !== undefined && bare !== undefined) others.push(`the requests each served alone in the ${profile?.seconds ?? 0} s of its profile above ${exact(ours / bare)}`);
  if (sequential !== null) others.push(`\`npm run bench\` (README, Performance: each contender alone in turn, the load generator sharing the machine) ${exact(sequential.ratio)} at ${sequential.size}`);
  lines[1] = `${lines[1]}${others.map((o) => `; ${o}`).join('')}.`;
  if (oldBare !== undefined && oldBareAlone !== undefined && old !== undefined && oldAlone !== undefined) {
    lines.push(
      `The target was the issue's own figure for ${old.theirs.replace(/^resilient-proxy at /, '').replace(/, node:http$/, '')} (1.265× in the issue's text, by its one-at-a-time method), which does not reproduce here: ${exact(oldBare.rpsRatio.median)} in the pairs, ${exact(oldBareAlone.rpsRatio.median)} alone. This build's CPU per request is ${exact(old.cpuRatio.median)} of that build's in the pairs and ${exact(oldAlone.cpuRatio.median)} alone (the target "at or below").`,
    );
  }
  const [floor, floorNode] = [find(simultaneous, 'floor'), find(simultaneous, 'floor-node')];
  if (floor !== undefined && floorNode !== undefined) {
    lines.push(
      `The floor of the design, undici's \`dispatch()\` with a handler that writes to the response and nothing else (the \`floor\` rows), serves ${exact(floor.rpsRatio.median)} the bare proxy's req/s at ${exact(floor.cpuRatio.median)} its CPU per request: about ${((1 - floor.cpuRatio.median) * 100).toFixed(0)} % of the bare proxy's CPU goes to its way of calling undici (an \`AbortController\`, which also cancels the upstream request when the client leaves, and undici's stream API, which also respects backpressure; the floor does neither). resilient-proxy with its defaults costs ${exact(floorNode.cpuRatio.median)} the floor's CPU per request: per-phase timers, the breaker, retry bookkeeping, the forwarding headers and the request id, with cancellation and backpressure.`,
    );
  }
  lines.push(
    `CPU per request alone would give ${exact(1 / node.cpuRatio.median)}; req/s in the same windows ranged from ${times(node.rpsRatio.min)} to ${times(node.rpsRatio.max)}.`,
  );
  const row = profile?.rows.find((r) => r.label === node.ours);
  const own = row?.origins.find((o) => o.fn === 'resilient-proxy');
  if (row !== undefined && own !== undefined) {
    lines.push(
      `resilient-proxy's own functions are ${own.micros.toFixed(1)} µs of the ${row.micros.toFixed(1)} µs sampled per request (${((own.micros / row.micros) * 100).toFixed(0)} %, profile above; self time only: what they cause inside Node and undici, such as promises, timers and the forwarding headers undici validates, is counted there).`,
    );
  }
  return ['', lines.join(' ')];
}

/** `bench/cpu.ts --alone` (bench/results/cpu-alone.json): the same pairs by issue 20's own method, one contender at a time; with the verdict on the `node:http` target from both runs. */
export function cpuAloneBlock(results: CpuResults, simultaneous: CpuResults, profile: ProfileResults | null, sequential: { ratio: number; size: string } | null): string {
  const lines = [
    `Run on ${results.date.slice(0, 10)}, commit ${results.commit}, Node ${results.node}, ${results.machine}: ${results.windows} rounds of ${results.seconds} s per pair, one contender at a time on the pinned core while the other idles, the order swapped every round, ${results.connections} connections (${results.totalSeconds} s in all).`,
    '',
    ...pairTable(results.pairs, 'req/s alone on the core'),
    ...nodeVerdict(simultaneous, results, profile, sequential),
  ];
  for (const note of results.notes) lines.push('', `*${note}*`);
  return lines.join('\n');
}

export function cpuBlock(results: CpuResults, profile: ProfileResults | null): string {
  const lines = [
    `Run on ${results.date.slice(0, 10)}, commit ${results.commit}, Node ${results.node}, ${results.machine}: ${results.windows} windows of ${results.seconds} s per pair${(results.lives ?? 1) > 1 ? ` over ${results.lives ?? 1} fresh process pairs` : ''}, ${results.connections} connections to each contender, both contenders pinned to one core and loaded at once from the other (${results.totalSeconds} s in all).`,
    '',
    ...pairTable(results.pairs, 'req/s in the same windows'),
  ];
  for (const note of results.notes) lines.push('', `*${note}*`);
  if (profile !== null) {
    const us = (r: ProfileRow): string => r.micros.toFixed(2);
    lines.push(
      '',
      `### Where the time goes: \`node --cpu-prof\``,
      '',
      `Each contender alone, profiled at 250 µs intervals over ${profile.seconds} s of the same load after a warm-up; sampled self time per request, idle excluded (sampling undercounts short functions). The contenders are profiled one after another, so each row's total moves with the machine: compare the shares within a row, not totals across rows or with the figures above. By where the code comes from:`,
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

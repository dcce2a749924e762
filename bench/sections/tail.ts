// The tail benchmark's table: BENCHMARKS.md's section between
// `<!-- tail:start -->` and `<!-- tail:end -->`, from bench/results/tail.json
// (written by `npx tsx bench/tail.ts`). Self-contained: it shares nothing
// with bench/render.ts.

export interface TailRow {
  readonly id: string;
  readonly label: string;
  /** Client requests sent in the measured run. */
  readonly requests: number;
  /** Client requests that got no 200 (or none in time). */
  readonly errors: number;
  /** Latency of the 200s, ms. */
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  /** Requests the replicas received in the measured run. */
  readonly upstreamRequests: number;
  /** upstreamRequests / requests. */
  readonly load: number;
  /** Hedges sent (resilient-proxy's snapshot), or `null` for a gateway without them. */
  readonly hedges: number | null;
  /** The median over the rounds of each round's own p99, ms: what a stall of the machine during one round does not move. */
  readonly medianRoundP99: number;
}

export interface TailResults {
  readonly run: {
    readonly date: string;
    readonly node: string;
    readonly smoke: boolean;
    readonly seconds: number;
    /** The run in this many rounds, every gateway driven in each. */
    readonly rounds: number;
    readonly rate: number;
    readonly slowMs: number;
    readonly slowShare: number;
    readonly warmupSeconds: number;
  };
  readonly rows: readonly TailRow[];
  readonly notes: readonly string[];
}

const ms = (value: number): string => (Number.isFinite(value) ? (value < 10 ? value.toFixed(1) : value.toFixed(0)) : '–');

export function tailBlock(results: TailResults): string {
  const { run } = results;
  const lines = [
    `Three replicas answering at once, one of which holds ${(run.slowShare * 100).toFixed(0)} % of its responses for ${run.slowMs} ms; every gateway driven open-loop at ${run.rate} GET/s for the same ${run.seconds} s, all at once, in ${run.rounds} rounds (after ${run.warmupSeconds} s of warm-up). p50, p99, p99.9 and max are over every request; "median round p99" is the median of the rounds' own p99s, which a stall of the shared machine during a round or two does not move. Run of ${run.date} on Node ${run.node}${run.smoke ? ' (smoke run: figures mean nothing)' : ''}: \`npx tsx bench/tail.ts\`.`,
    '',
    '| gateway | p50 (ms) | median round p99 (ms) | p99 (ms) | p99.9 (ms) | max (ms) | client errors | upstream / client requests | hedges |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const row of results.rows) {
    lines.push(`| ${row.label} | ${ms(row.p50)} | ${ms(row.medianRoundP99)} | ${ms(row.p99)} | ${ms(row.p999)} | ${ms(row.max)} | ${row.errors} | ${row.load.toFixed(3)}× | ${row.hedges ?? '–'} |`);
  }
  const pairs: [string, string, string][] = [
    ['rp', 'rp-hedged', 'default balancer'],
    ['rp-rr', 'rp-rr-hedged', 'round-robin'],
  ];
  for (const [without, withHedge, balancer] of pairs) {
    const plain = results.rows.find((row) => row.id === without);
    const hedged = results.rows.find((row) => row.id === withHedge);
    if (plain === undefined || hedged === undefined) continue;
    lines.push(
      '',
      `Hedged against unhedged (${balancer}): median round p99 ${(hedged.medianRoundP99 / plain.medianRoundP99).toFixed(3)}×, p99 ${(hedged.p99 / plain.p99).toFixed(3)}×, p99.9 ${(hedged.p999 / plain.p999).toFixed(3)}×, for ${((hedged.load - 1) * 100).toFixed(1)} % extra upstream load (issue 23's target: p99 ≤ 0.3× at ≤ 10 %).`,
    );
  }
  for (const note of results.notes) lines.push('', note);
  return lines.join('\n');
}

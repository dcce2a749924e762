// BENCHMARKS.md's throughput, memory, refusal and amplification tables and
// README.md's Performance block, from bench/results/latest.json (`npm run bench`,
// bench/run.ts). Words that judge a figure ("ahead", "met") are computed from
// it too, so a new run cannot leave a stale verdict.

import type { BenchResults, ContenderId, RefusalMeasure, ThroughputTable } from '../results.js';
import { bytesLabel, list, mib, micros, ms, perRequest, refusalTimes, rps, standing, times, wrap } from './format.js';

const UNTIL: Record<RefusalMeasure, { short: string; long: string }> = {
  head: { short: '`writeHead()`', long: '`writeHead()`: the answer is known' },
  end: { short: '`res.end()`', long: '`res.end()`: the proxy hands over the full response' },
  finish: { short: "`'finish'`", long: "`'finish'`: Node has written it to the socket" },
};


class View {
  constructor(readonly results: BenchResults) {}

  table(size: string): ThroughputTable | undefined {
    return this.results.throughput.find((table) => table.size === size);
  }

  row(size: string, id: ContenderId) {
    return this.table(size)?.rows.find((row) => row.id === id);
  }

  /** Median req/s of `id` over that of `base`, at `size`; null when either is missing. */
  ratio(size: string, id: ContenderId, base: ContenderId): number | null {
    const a = this.row(size, id);
    const b = this.row(size, base);
    return a === undefined || b === undefined || b.rps.median === 0 ? null : a.rps.median / b.rps.median;
  }

  /** `1.31× at 1 KiB, 1.64× at 1 MiB` (`prose`: `1.31× (1 KiB) and 1.64× (1 MiB)`) for every size measured. */
  ratios(id: ContenderId, base: ContenderId): { text: string; prose: string; values: number[] } {
    const parts: string[] = [];
    const prose: string[] = [];
    const values: number[] = [];
    for (const table of this.results.throughput) {
      const value = this.ratio(table.size, id, base);
      if (value === null) continue;
      values.push(value);
      parts.push(`${times(value)} at ${bytesLabel(table.bytes)}`);
      prose.push(`${times(value)} (${bytesLabel(table.bytes)})`);
    }
    return { text: parts.length === 0 ? 'not measured' : parts.join(', '), prose: list(prose), values };
  }

  get firstSize(): ThroughputTable | undefined {
    return this.results.throughput[0];
  }

  refusal(measure: RefusalMeasure) {
    const row = this.results.refusal.rows.find((r) => r.measure === measure);
    return row === undefined ? undefined : { ...row, ratio: row.refusedMicros / row.openMicros };
  }

  /** The largest RSS growth among resilient-proxy's own contenders. */
  worstMemory() {
    let worst: { id: ContenderId; label: string; direction: 'download' | 'upload'; value: number } | null = null;
    for (const row of this.results.memory.rows) {
      if (!OURS.has(row.id)) continue;
      for (const direction of ['download', 'upload'] as const) {
        if (worst === null || row[direction] > worst.value) worst = { id: row.id, label: row.label, direction, value: row[direction] };
      }
    }
    return worst;
  }

  amplification(label: string) {
    const row = this.results.amplification.rows.find((r) => r.label === label);
    return row === undefined ? undefined : { ...row, ratio: row.hits / this.results.amplification.clientRequests };
  }
}

/** resilient-proxy's own contenders: on node:http, in Express, on Fastify. */
const OURS = new Set<ContenderId>(['c', 'd', 'f']);

function runLine(results: BenchResults): string {
  const { run } = results;
  const parts = [
    `**The run:** ${run.description}`,
    `Node ${run.node}, ${run.machine}; ${run.rounds} ${run.rounds === 1 ? 'round' : 'rounds'} × ${run.seconds} s per contender and size, ${run.connections} keep-alive connections.`,
    run.nginx ? 'nginx was installed and is included.' : 'nginx was not installed and is left out.',
  ];
  if (run.smoke) parts.unshift('**A smoke run: these figures mean nothing.**');
  return parts.join(' ');
}

function throughputTables(view: View): string[] {
  const lines: string[] = [];
  for (const table of view.results.throughput) {
    lines.push(`Responses of ${bytesLabel(table.bytes)}:`, '');
    lines.push('| contender | req/s | p50 ms | p99 ms | req/s vs (b) | req/s vs (a) |', '|---|---|---|---|---|---|');
    for (const row of table.rows) {
      const vsB = view.ratio(table.size, row.id, 'b');
      const vsA = view.ratio(table.size, row.id, 'a');
      lines.push(
        `| ${row.label} | ${rps(row.rps.median)} (${rps(row.rps.min)}–${rps(row.rps.max)}) | ${ms(row.p50)} | ${ms(row.p99.median)} (${ms(row.p99.min)}–${ms(row.p99.max)}) | ${vsB === null ? '–' : vsB.toFixed(2)} | ${vsA === null ? '–' : vsA.toFixed(2)} |`,
      );
    }
    lines.push('');
  }
  return lines;
}

function memorySection(view: View): string[] {
  const { memory, earlier } = view.results;
  const lines = [
    '## Memory while streaming',
    '',
    `Peak RSS growth of the proxy process while streaming ${bytesLabel(memory.bytes)} through it, sampled`,
    'every 10 ms from `/proc/<pid>/status` and measured over its RSS just before:',
    '',
    '| contender | download, MiB | upload, MiB |',
    '|---|---|---|',
    ...memory.rows.map((row) => `| ${row.label} | ${mib(row.download)} | ${mib(row.upload)} |`),
    '',
  ];
  const worst = view.worstMemory();
  if (worst !== null) {
    const before = earlier
      .map((run) => run.memory.find((row) => row.id === worst.id)?.[worst.direction])
      .filter((value): value is number => value !== undefined)
      .map((value) => `${mib(value)} MiB`);
    const row = worst.label.split(' ')[0] ?? worst.label;
    const share = worst.value / (memory.bytes / 1024 ** 2);
    const verdict = worst.value >= 50 ? 'above the 50 MiB target' : share < 0.05 ? 'memory stays flat' : 'within the 50 MiB target';
    lines.push(
      ...wrap(
        `The worst case for resilient-proxy is row ${row}, ${worst.direction === 'upload' ? 'uploading' : 'downloading'}: ` +
          `${mib(worst.value)} MiB for ${bytesLabel(memory.bytes)} transferred, so ${verdict}.` +
          (before.length > 0 ? ` Earlier full runs measured ${list(before)} for the same row.` : ''),
      ),
      '',
    );
  }
  return lines;
}

function refusalSection(view: View): string[] {
  const { refusal, earlier } = view.results;
  const lines = [
    '## Refusing with the circuit open',
    '',
    `Server-side time per request, median of ${refusal.rounds} interleaved rounds of ${refusal.requests / refusal.rounds}`,
    'sequential requests (`bench/breaker-refusal.ts`):',
    '',
    '| until | refused connection | circuit open | ratio |',
    '|---|---|---|---|',
  ];
  for (const measure of ['head', 'end', 'finish'] as const) {
    const row = view.refusal(measure);
    if (row !== undefined) lines.push(`| ${UNTIL[measure].long} | ${micros(row.refusedMicros)} | ${micros(row.openMicros)} | ${refusalTimes(row.ratio)} |`);
  }
  lines.push('');
  const prose = ['The refused-connection path has retries off; with retries on it would be 3 connects.'];
  const runs = earlier
    .map((run) => (['head', 'end', 'finish'] as const).map((m) => run.refusalRatios[m]).filter((v): v is number => v !== undefined))
    .filter((ratios) => ratios.length > 0)
    .map((ratios) => ratios.map(refusalTimes).join(' / '));
  if (runs.length > 0) prose.push(`Earlier full runs measured ${list(runs)}.`);
  prose.push('The ratios move from run to run because the open-circuit path is so short that scheduling noise is a large share of it.');
  const end = view.refusal('end');
  const finish = view.refusal('finish');
  if (end !== undefined && finish !== undefined) {
    prose.push(
      `The last row adds Node's own write of the response, the same on both paths: here ${micros(finish.refusedMicros - end.refusedMicros)} and ${micros(finish.openMicros - end.openMicros)}.`,
    );
  }
  lines.push(...wrap(prose.join(' ')), '');
  return lines;
}

function amplificationSection(view: View): string[] {
  const { amplification } = view.results;
  return [
    '## Amplification under a total outage',
    '',
    `${amplification.clientRequests} client GETs at concurrency ${amplification.concurrency} against an upstream that only answers 503,`,
    `retries: ${amplification.retries} (\`bench/retry-amplification.ts\`):`,
    '',
    '| configuration | upstream requests | per client request |',
    '|---|---|---|',
    ...amplification.rows.map((row) => `| ${row.label} | ${row.hits} | ${perRequest(row.hits / amplification.clientRequests)} |`),
    '',
  ];
}

function targetsSection(view: View): string[] {
  const first = view.firstSize;
  const size = first?.size ?? '1k';
  const sizeLabel = first === undefined ? '1 KiB' : bytesLabel(first.bytes);
  const rows: string[] = [];
  const add = (target: string, result: string, met: string): void => {
    rows.push(`| ${target} | ${result} | ${met} |`);
  };

  const dB = view.ratio(size, 'd', 'b');
  const d = view.row(size, 'd');
  const b = view.row(size, 'b');
  if (dB !== null && d !== undefined && b !== undefined) {
    const met = dB >= 1.1 && d.p99.median <= b.p99.median;
    add(`(d) ≥ 1.1× the req/s of (b), p99 no worse, at ${sizeLabel}`, `${times(dB)}; p99 ${ms(d.p99.median)} ms vs ${ms(b.p99.median)} ms`, met ? 'yes' : '**no**: Express; see below');
  }

  const dE = view.ratios('d', 'e');
  if (dE.values.length > 0) add('(d) ≥ 2× (e)', dE.text, dE.values.every((v) => v >= 2) ? 'yes' : dE.values.some((v) => v >= 2) ? 'at some sizes' : '**no**');

  const fG = view.ratios('f', 'g');
  if (fG.values.length > 0) {
    const verdicts = view.results.throughput.flatMap((table) => {
      const value = view.ratio(table.size, 'f', 'g');
      if (value === null) return [];
      const at = bytesLabel(table.bytes);
      if (value >= 1.2) return [`at ${at}`];
      return [`${standing(value) === 'ahead' ? 'ahead but under 1.2×' : standing(value)} at ${at}`];
    });
    add('(f) ≥ 1.2× (g)', fG.text, fG.values.every((v) => v >= 1.2) ? 'yes' : verdicts.join('; '));
  }

  const worst = view.worstMemory();
  if (worst !== null) {
    add(`streaming RSS growth < 50 MiB for ${bytesLabel(view.results.memory.bytes)}`, `at most ${mib(worst.value)} MiB`, worst.value < 50 ? 'yes' : '**no**');
  }

  const refusals = (['head', 'end', 'finish'] as const).flatMap((measure) => {
    const row = view.refusal(measure);
    return row === undefined ? [] : [{ measure, ratio: row.ratio }];
  });
  if (refusals.length > 0) {
    const spreads = refusals.map(({ measure, ratio }) => {
      const all = [ratio, ...view.results.earlier.map((run) => run.refusalRatios[measure]).filter((v): v is number => v !== undefined)];
      return all.length > 1 ? `${refusalTimes(Math.min(...all))}–${refusalTimes(Math.max(...all))}` : null;
    });
    const runs = 1 + view.results.earlier.length;
    const result =
      refusals.map(({ measure, ratio }) => `${refusalTimes(ratio)} (${UNTIL[measure].short})`).join(', ') +
      (spreads.every((s) => s !== null) && runs > 1 ? `; over ${runs} full runs: ${spreads.join(', ')}` : '');
    const passing = refusals.filter(({ ratio }) => ratio >= 10).map(({ measure }) => UNTIL[measure].short);
    const met = passing.length === refusals.length ? 'yes' : passing.length === 0 ? '**no**' : `at ${list(passing)} only`;
    add('breaker-open refusal ≥ 10× faster than a refused connect', result, met);
  }

  const cB = view.ratio(size, 'c', 'b');
  const c = view.row(size, 'c');
  if (cB !== null && c !== undefined && b !== undefined) {
    add(
      'resilient-proxy core vs the bare engine (apples to apples: (c) vs (b))',
      `${times(cB)} req/s, p99 ${ms(c.p99.median)} vs ${ms(b.p99.median)} ms`,
      standing(cB),
    );
  }

  return ['## The targets, honestly', '', '| target | result | met? |', '|---|---|---|', ...rows, ''];
}

function expressParagraph(view: View): string[] {
  const size = view.firstSize?.size ?? '1k';
  const b2B = view.ratio(size, 'b2', 'b');
  const dB2 = view.ratio(size, 'd', 'b2');
  const cB = view.ratio(size, 'c', 'b');
  const d = view.row(size, 'd');
  const b2 = view.row(size, 'b2');
  if (b2B === null || dB2 === null || cB === null || d === undefined || b2 === undefined) return [];
  const share = Math.round((1 - b2B) * 100);
  return [
    ...wrap(
      '**What (d) against (b) measures.** It mixes two things: our proxy, and ' +
        "Express's own cost per request. The diagnostic row (b′) separates them. " +
        `The bare engine inside Express manages ${times(b2B)} of itself on bare \`node:http\`: ` +
        "Express 5's router, its request and response decoration, and its default `X-Powered-By` " +
        "header (which forces Node's slower header-merging path) take " +
        `about ${share} % of each request's time here. Compared like for like, resilient-proxy in ` +
        'Express with everything on (timeouts, total deadline, retries, budget, breaker, capacity) is ' +
        `${times(dB2)} the bare engine in Express, at a p99 of ${ms(d.p99.median)} ms against ${ms(b2.p99.median)} ms. ` +
        `Without a framework, (c) is ${times(cB)} the bare engine.`,
    ),
    '',
  ];
}

function userSection(view: View): string[] {
  const size = view.firstSize?.size ?? '1k';
  const sizeLabel = view.firstSize === undefined ? '1 KiB' : bytesLabel(view.firstSize.bytes);
  const bullets: string[] = [];
  const cB = view.ratio(size, 'c', 'b');
  const c = view.row(size, 'c');
  const b = view.row(size, 'b');
  if (cB !== null && c !== undefined && b !== undefined) {
    const pace = { ahead: 'faster than', level: 'as fast as', behind: 'slower than' }[standing(cB)];
    bullets.push(
      `**Without a framework** (\`node:http\`), resilient-proxy is ${pace} a hand-written undici proxy ` +
        `(${times(cB)} its requests per second at ${sizeLabel}, p99 ${ms(c.p99.median)} ms against ${ms(b.p99.median)} ms), ` +
        'with timeouts, retries and a breaker that the hand-written proxy lacks.',
    );
  }
  const b2B = view.ratio(size, 'b2', 'b');
  const dB2 = view.ratio(size, 'd', 'b2');
  const dE = view.ratios('d', 'e');
  const fG = view.ratio(size, 'f', 'g');
  // The advice holds only while both beat resilient-proxy inside Express.
  const fastest = (view.ratio(size, 'f', 'd') ?? 0) > 1.05 && (view.ratio(size, 'c', 'd') ?? 0) > 1.05;
  if (dB2 !== null && dE.values.length > 0) {
    const cost = { ahead: 'costs less than', level: 'costs about the same as', behind: 'costs more than' }[standing(dB2)];
    bullets.push(
      `**Inside Express**, ${b2B !== null && b2B < 0.7 ? "Express's own overhead weighs most. " : ''}resilient-proxy ${cost} a bare undici proxy ` +
        `there (${times(dB2)}), and serves ${dE.prose} the requests of http-proxy-middleware.` +
        (fG !== null && fastest ? ` For the most throughput, use the Fastify adapter (${times(fG)} @fastify/http-proxy at ${sizeLabel}) or bare \`node:http\`.` : ''),
    );
  }
  const worst = view.worstMemory();
  if (worst !== null) bullets.push(`**Large bodies:** memory stays within ${mib(worst.value)} MiB of growth for ${bytesLabel(view.results.memory.bytes)} transfers.`);
  const defaults = view.amplification('defaults (breaker + budget)');
  const none = view.amplification('no budget, no breaker');
  const head = view.refusal('head');
  const end = view.refusal('end');
  if (defaults !== undefined && none !== undefined && head !== undefined && end !== undefined) {
    bullets.push(
      `**During an outage**, the defaults sent the failing upstream ${perRequest(defaults.ratio)} requests per client request, ` +
        `against ${perRequest(none.ratio)} with neither budget nor breaker. With the circuit open a refusal takes ` +
        `${micros(head.openMicros)} to ${micros(end.openMicros)} of proxy time.`,
    );
  }
  return ['## What this means for a user', '', ...bullets.flatMap((bullet) => wrap(`- ${bullet}`, '  ')), ''];
}

/** Everything between BENCHMARKS.md's markers. */
export function benchmarksBlock(results: BenchResults): string {
  const view = new View(results);
  return [
    ...wrap(runLine(results)),
    '',
    '## Throughput and latency',
    '',
    ...throughputTables(view),
    ...memorySection(view),
    ...refusalSection(view),
    ...amplificationSection(view),
    ...targetsSection(view),
    ...expressParagraph(view),
    ...userSection(view),
  ]
    .join('\n')
    .trimEnd();
}

/** `npm run bench`'s req/s of resilient-proxy on `node:http` over the bare undici proxy's, at the first body size (README, Performance). */
export function nodeOverBare(results: BenchResults): { ratio: number; size: string } | null {
  const view = new View(results);
  const ratio = view.ratio(view.firstSize?.size ?? '1k', 'c', 'b');
  return ratio === null ? null : { ratio, size: view.firstSize === undefined ? '1 KiB' : bytesLabel(view.firstSize.bytes) };
}

/** A bench/cpu.ts pair's figures, ours over theirs. */
export interface SideBySide {
  readonly rpsRatio: number;
  readonly cpuRatio: number;
}

/** bench/cpu.ts's figure for a pair (the method of record), said after `npm run bench`'s. */
function sideBySideClause(pair: SideBySide | undefined, what: string): string {
  return pair === undefined ? '' : `; ${what}, ${times(pair.rpsRatio)} the requests at ${times(pair.cpuRatio)} the CPU per request`;
}

/** Everything between the markers in README.md's Performance section; `pairs`: bench/cpu.ts's `node`, `express` and `fastify` pairs, by id. */
export function readmeBlock(results: BenchResults, pairs: ReadonlyMap<string, SideBySide> = new Map()): string {
  const view = new View(results);
  const size = view.firstSize?.size ?? '1k';
  const sizeLabel = view.firstSize === undefined ? '1 KiB' : bytesLabel(view.firstSize.bytes);
  const { run } = results;
  const bullets: string[] = [];

  const cB = view.ratio(size, 'c', 'b');
  const c = view.row(size, 'c');
  const b = view.row(size, 'b');
  if (cB !== null && c !== undefined && b !== undefined) {
    bullets.push(
      `**On bare \`node:http\`:** at ${sizeLabel}, resilient-proxy with its defaults (timeouts, retries, breaker) serves ` +
        `${times(cB)} the requests per second of a hand-written undici proxy (\`Pool.stream\`), at a p99 of ` +
        `${ms(c.p99.median)} ms against ${ms(b.p99.median)} ms` +
        `${sideBySideClause(pairs.get('node'), 'measured by `bench/cpu.ts` with both at once on one core (the method of record, which spreads less within a run)')}.`,
    );
  }
  const b2B = view.ratio(size, 'b2', 'b');
  const dB2 = view.ratio(size, 'd', 'b2');
  const dE = view.ratios('d', 'e');
  if (b2B !== null && dB2 !== null) {
    bullets.push(
      `**Inside Express:** ${b2B < 0.7 ? "Express's own cost weighs most" : "Express's own cost"}: a bare undici proxy mounted in Express serves ` +
        `${times(b2B)} of what it serves alone. resilient-proxy with everything on serves ${times(dB2)} that bare proxy ` +
        `in Express, and ${dE.prose} the requests of http-proxy-middleware` +
        `${sideBySideClause(pairs.get('express'), `by \`bench/cpu.ts\` with its defaults, both at once, at ${sizeLabel}`)}.`,
    );
  }
  const fG = view.ratios('f', 'g');
  if (fG.values.length > 0) bullets.push(`**On Fastify:** the adapter serves ${fG.prose} the requests of @fastify/http-proxy${sideBySideClause(pairs.get('fastify'), `by \`bench/cpu.ts\`, both at once, at ${sizeLabel}`)}.`);
  const worst = view.worstMemory();
  if (worst !== null) {
    bullets.push(`**Large bodies:** streaming ${bytesLabel(results.memory.bytes)} through the proxy grows its RSS by at most ${mib(worst.value)} MiB.`);
  }
  const head = view.refusal('head');
  const finish = view.refusal('finish');
  if (head !== undefined && finish !== undefined) {
    bullets.push(
      `**With the circuit open:** a refusal is decided in ${micros(head.openMicros)} of proxy time, against ` +
        `${micros(head.refusedMicros)} for a refused connection (${refusalTimes(head.ratio)}). Counting Node's own ` +
        `write of the response, the same on both paths: ${micros(finish.openMicros)} against ${micros(finish.refusedMicros)} (${refusalTimes(finish.ratio)}).`,
    );
  }
  const { amplification } = results;
  const defaults = view.amplification('defaults (breaker + budget)');
  const budget = view.amplification('budget only, no breaker');
  const none = view.amplification('no budget, no breaker');
  if (defaults !== undefined && budget !== undefined && none !== undefined) {
    bullets.push(
      `**During a total outage** (${amplification.clientRequests} GETs, every upstream answer 503): the upstream got ` +
        `${defaults.hits} requests with the defaults (${perRequest(defaults.ratio)} per client request; the circuit opened), ` +
        `${budget.hits} (${perRequest(budget.ratio)}) with the retry budget and no breaker, and ${none.hits} ` +
        `(${perRequest(none.ratio)}) with neither.`,
    );
  }
  return [
    ...wrap(
      `${run.smoke ? '**A smoke run: these figures mean nothing.** ' : ''}Measured on one machine (${run.machine}), Node ${run.node}, ` +
        `by \`npm run bench\`${run.commit === null ? '' : ` on commit ${run.commit}`}. Which run, the method, every table and the caveats: [BENCHMARKS.md](BENCHMARKS.md).`,
    ),
    '',
    ...bullets.flatMap((bullet) => wrap(`- ${bullet}`, '  ')),
  ].join('\n');
}

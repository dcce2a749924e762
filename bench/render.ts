// Markdown from bench/results/*.json: BENCHMARKS.md's tables and README.md's
// Performance block. Pure functions of the results, so the runner's printout
// and the docs can never disagree. Words that judge a figure ("ahead",
// "met") are computed from it too, so a new run cannot leave a stale verdict.

import type { Balance, BenchResults, ContenderId, FaultResults, FaultRow, FaultScenario, FaultScenarioId, RefusalMeasure, ThroughputTable } from './results.js';

const UNTIL: Record<RefusalMeasure, { short: string; long: string }> = {
  head: { short: '`writeHead()`', long: '`writeHead()`: the answer is known' },
  end: { short: '`res.end()`', long: '`res.end()`: the proxy hands over the full response' },
  finish: { short: "`'finish'`", long: "`'finish'`: Node has written it to the socket" },
};

// One formatter per kind of figure, used by tables and prose alike: a figure
// reads the same wherever it appears.
const fixed = (digits: number) => (value: number): string => value.toFixed(digits);
const rps = fixed(0);
const micros = (value: number): string => `${value.toFixed(1)} µs`;
const mib = (value: number): string => value.toFixed(1);
const ms = (value: number): string => (Number.isInteger(value) ? String(value) : value.toFixed(1));
const times = (value: number): string => `${value.toFixed(2)}×`;
const refusalTimes = (value: number): string => `${value.toFixed(1)}×`;
const perRequest = fixed(3);

function bytesLabel(bytes: number): string {
  if (bytes >= 1024 ** 3 && bytes % 1024 ** 3 === 0) return `${bytes / 1024 ** 3} GiB`;
  if (bytes >= 1024 ** 2 && bytes % 1024 ** 2 === 0) return `${bytes / 1024 ** 2} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}

/** "a, b and c" */
function list(items: readonly string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items.at(-1) ?? ''}`;
}

/** Ahead, level or behind, with 5 % either way counted as level. */
function standing(ratio: number): 'ahead' | 'level' | 'behind' {
  if (ratio >= 1.05) return 'ahead';
  if (ratio <= 0.95) return 'behind';
  return 'level';
}

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

/** Hard-wraps prose at about 80 columns, as the rest of the docs are. */
function wrap(text: string, indent = ''): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > 80) {
      lines.push(line);
      line = indent + word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(line);
  return lines;
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

/** Everything between the markers in README.md's Performance section. */
export function readmeBlock(results: BenchResults): string {
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
        `${ms(c.p99.median)} ms against ${ms(b.p99.median)} ms.`,
    );
  }
  const b2B = view.ratio(size, 'b2', 'b');
  const dB2 = view.ratio(size, 'd', 'b2');
  const dE = view.ratios('d', 'e');
  if (b2B !== null && dB2 !== null) {
    bullets.push(
      `**Inside Express:** ${b2B < 0.7 ? "Express's own cost weighs most" : "Express's own cost"}: a bare undici proxy mounted in Express serves ` +
        `${times(b2B)} of what it serves alone. resilient-proxy with everything on serves ${times(dB2)} that bare proxy ` +
        `in Express, and ${dE.prose} the requests of http-proxy-middleware.`,
    );
  }
  const fG = view.ratios('f', 'g');
  if (fG.values.length > 0) bullets.push(`**On Fastify:** the adapter serves ${fG.prose} the requests of @fastify/http-proxy.`);
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
      `${run.smoke ? '**A smoke run: these figures mean nothing.** ' : ''}Measured side by side on one machine (${run.machine}), Node ${run.node}, ` +
        `by \`npm run bench\`${run.commit === null ? '' : ` on commit ${run.commit}`}. Which run, the method, every table and the caveats: [BENCHMARKS.md](BENCHMARKS.md).`,
    ),
    '',
    ...bullets.flatMap((bullet) => wrap(`- ${bullet}`, '  ')),
  ].join('\n');
}

// ---------------------------------------------------------------------------
// The fault benchmark: BENCHMARKS.md's section between `<!-- faults:start -->`
// and `<!-- faults:end -->`, from bench/results/faults.json.

/** Client failures: non-2xx responses plus socket errors and timeouts. */
const failures = (row: FaultRow): number => row.non2xx + row.errors;
const perReplica = (values: readonly number[]): string => values.join(' / ');
const share = (part: number, whole: number): string => (whole === 0 ? '–' : `${((100 * part) / whole).toFixed(part === 0 || part === whole ? 0 : 1)} %`);
/** Upstream attempts per client request: three decimals, or two significant digits when smaller. */
const loadRatio = (value: number): string => (value === 0 || value >= 0.001 ? perRequest(value) : value.toPrecision(2));
const spreadMs = (s: { median: number; min: number; max: number }): string => `${ms(s.median)} (${ms(s.min)}–${ms(s.max)})`;
const spreadRps = (s: { median: number; min: number; max: number }): string => `${rps(s.median)} (${rps(s.min)}–${rps(s.max)})`;

function statusList(row: FaultRow): string {
  const parts = Object.entries(row.statuses)
    .sort(([, a], [, b]) => b - a)
    .map(([status, count]) => `${status}: ${count}`);
  if (row.errors > 0) parts.push(`socket errors: ${row.errors}`);
  return parts.length === 0 ? 'none' : parts.join(', ');
}

class FaultView {
  constructor(readonly results: FaultResults) {}

  scenario(id: FaultScenarioId): FaultScenario | undefined {
    return this.results.scenarios.find((s) => s.id === id);
  }

  row(id: FaultScenarioId, contender: string): FaultRow | undefined {
    return this.scenario(id)?.rows.find((row) => row.id === contender);
  }

  /** The resilient-proxy group row with this balance mode (the defaults' row for the default mode). */
  balanceRow(id: FaultScenarioId, balance: Balance): FaultRow | undefined {
    const rows = this.scenario(id)?.rows ?? [];
    return rows.find((row) => row.id === 'rp' && row.balance === balance) ?? rows.find((row) => row.id !== 'rp' && row.balance === balance);
  }

  /** Upstream attempts in S6: requests that reached a replica plus connection attempts to their (closed) ports. */
  upstreamLoad(row: FaultRow): { attempts: number; ratio: number } {
    const attempts = row.replicas.reduce((a, b) => a + b, 0) + (row.connects ?? []).reduce((a, b) => a + b, 0);
    return { attempts, ratio: row.requests === 0 ? 0 : attempts / row.requests };
  }
}

/** Which replicas misbehave in a scenario, by number (1-based). */
function faulty(scenario: FaultScenario): number[] {
  return scenario.modes.flatMap((mode, i) => (mode === 'ok' ? [] : [i + 1]));
}

/** Per-round values in ms, as seconds: the median (min–max), with the rounds where it did not happen. */
function roundsSeconds(values: readonly (number | null)[], none: string): string {
  const known = values.flatMap((v) => (v === null ? [] : [v / 1000]));
  if (known.length === 0) return none;
  const sorted = [...known].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? (sorted[middle] ?? 0) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
  const s = (x: number): string => (x < 10 ? x.toFixed(2) : x.toFixed(1));
  const range = sorted.length > 1 ? ` (${s(sorted[0] ?? 0)}–${s(sorted.at(-1) ?? 0)})` : '';
  const missing = values.length - known.length;
  return `${s(median)}${range}${missing > 0 ? `; ${none} in ${missing} of ${values.length}` : ''}`;
}

function restartTable(view: FaultView, scenario: FaultScenario): string[] {
  const { run } = view.results;
  const down = (scenario.downMs ?? 0) / 1000;
  const lines = [
    `### ${scenario.id}: ${scenario.title}`,
    '',
    '| contender | client requests | non-2xx | socket errors | reported out (hook), s after the kill | last connection attempt on the dead port, s after the kill | connection attempts while down | first request after the restart, s | requests per replica (1 / 2 / 3) |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const row of scenario.rows) {
    const r = row.recovery;
    const counted = run.connectsCounted && r !== undefined;
    lines.push(
      `| ${row.label} | ${row.requests} | ${row.non2xx} | ${row.errors} | ${r === undefined || !row.id.startsWith('rp') ? '–' : roundsSeconds(r.outMs, 'never')} | ${counted ? roundsSeconds(r.lastAttemptMs, 'none') : 'not counted'} | ${counted ? r.attemptsWhileDown.map((n) => n ?? '–').join(', ') : 'not counted'} | ${r === undefined ? '–' : roundsSeconds(r.firstRequestMs, `none within the run (${Math.max(...r.runSeconds)} s)`)} | ${perReplica(row.replicas)} |`,
    );
  }
  lines.push(
    '',
    ...wrap(
      `Replica 3 is killed (its port closed, its connections cut) ${(scenario.killAtMs ?? 0) / 1000} s into each run and restarted on the same port ${down} s later; a run ends 1 s after the replica's first request after the restart, or after ${scenario.seconds} s. Times are medians over rounds (min–max). The hook column is resilient-proxy's \`onHostStateChange\` (ejected, or \`failing\` when \`maxEjectionPercent\` leaves no room); the last connection attempt (a SYN on loopback, counted with tcpdump) is when a contender stopped trying the dead port, measured the same way for all; connection attempts are per round. resilient-proxy takes a host back when its ejection ends (\`outlierDetection.baseEjectionTime\`, 30 s by default, as Envoy), nginx when \`fail_timeout\` (10 s) has passed since its last failure; http-proxy-middleware never stops trying.`,
    ),
    '',
  );
  return lines;
}

function scenarioTable(view: FaultView, scenario: FaultScenario): string[] {
  const { run } = view.results;
  if (scenario.id === 'S7') return restartTable(view, scenario);
  const lines = [`### ${scenario.id}: ${scenario.title}`, ''];
  if (scenario.id === 'S6') {
    lines.push(
      '| contender | client requests | responses | 502 problem+json | upstream attempts | per client request | req/s | p99 ms |',
      '|---|---|---|---|---|---|---|---|',
    );
    for (const row of scenario.rows) {
      const load = view.upstreamLoad(row);
      lines.push(
        `| ${row.label} | ${row.requests} | ${statusList(row)} | ${row.problemJson === null ? '–' : `${row.problemJson}${row.codes !== null && Object.keys(row.codes).length > 0 ? ` (${Object.entries(row.codes).map(([code, n]) => `${code}: ${n}`).join(', ')})` : ''}`} | ${load.attempts} | ${loadRatio(load.ratio)} | ${spreadRps(row.rps)} | ${spreadMs(row.p99)} |`,
      );
    }
    lines.push(
      '',
      ...wrap(
        `Upstream attempts are the requests that reached a replica plus the connection attempts to their closed ports${run.connectsCounted ? ' (SYNs counted with tcpdump on loopback)' : ' (not counted in this run: tcpdump was not available, so only requests are)'}.`,
      ),
      '',
    );
    return lines;
  }
  const bad = faulty(scenario);
  const knocks = run.connectsCounted && (scenario.id === 'S2' || scenario.id === 'S5');
  lines.push(
    `| contender | client requests | non-2xx | socket errors | req/s | p50 ms | p99 ms | requests per replica (1 / 2 / 3) |${knocks ? ` connects to replica ${bad.join(', ')} |` : ''}`,
    `|---|---|---|---|---|---|---|---|${knocks ? '---|' : ''}`,
  );
  for (const row of scenario.rows) {
    const connects = knocks ? ` ${bad.map((i) => row.connects?.[i - 1] ?? 0).join(', ')} |` : '';
    lines.push(
      `| ${row.label} | ${row.requests} | ${row.non2xx} | ${row.errors} | ${spreadRps(row.rps)} | ${ms(row.p50)} | ${spreadMs(row.p99)} | ${perReplica(row.replicas)} |${connects}`,
    );
  }
  lines.push('');
  return lines;
}

function faultTargets(view: FaultView): string[] {
  const rows: string[] = [];
  const add = (target: string, result: string, met: string): void => {
    rows.push(`| ${target} | ${result} | ${met} |`);
  };
  const group = view.row('S1', 'rp');
  const single = view.row('S1', 'rp-single');
  if (group !== undefined && single !== undefined && single.rps.median > 0) {
    const ratio = group.rps.median / single.rps.median;
    add('S1: group of three ≥ 0.95× a single target (req/s)', `${times(ratio)}: ${rps(group.rps.median)} against ${rps(single.rps.median)} req/s`, ratio >= 0.95 ? 'yes' : '**no**');
  }
  const fault: Partial<Record<FaultScenarioId, string>> = { S2: 'one replica refusing', S3: 'one replica answering 503', S5: 'one replica flapping', S7: 'one replica killed, then restarted' };
  for (const id of ['S2', 'S3', 'S5', 'S7'] as const) {
    const row = view.row(id, 'rp');
    if (row === undefined) continue;
    const failed = failures(row);
    add(
      `${id} (${fault[id] ?? ''}): 0 client errors for GETs`,
      failed === 0 ? `0 of ${row.requests}` : `${row.non2xx} non-2xx and ${row.errors} socket errors of ${row.requests} (${share(failed, row.requests)})`,
      failed === 0 ? 'yes' : '**no**',
    );
  }
  const defaultRow = view.row('S4', 'rp');
  const roundRobin = view.balanceRow('S4', 'round-robin');
  const nginx = view.row('S4', 'nginx');
  if (defaultRow !== undefined && roundRobin !== undefined && roundRobin !== defaultRow && roundRobin.p99.median > 0) {
    const ratio = defaultRow.p99.median / roundRobin.p99.median;
    add(
      `S4: p99 of the default balancer (${view.results.run.defaultBalance}) ≤ 0.5× round-robin's`,
      `${ms(defaultRow.p99.median)} ms against ${ms(roundRobin.p99.median)} ms (${times(ratio)})`,
      ratio <= 0.5 ? 'yes' : '**no**',
    );
  }
  if (defaultRow !== undefined && nginx !== undefined) {
    add('S4: p99 of the default balancer below nginx’s', `${ms(defaultRow.p99.median)} ms against ${ms(nginx.p99.median)} ms`, defaultRow.p99.median < nginx.p99.median ? 'yes' : '**no**');
  }
  const down = view.row('S6', 'rp');
  if (down !== undefined) {
    const only502 = Object.keys(down.statuses).every((status) => status === '502');
    const contract = down.errors === 0 && only502 && down.problemJson === down.non2xx && down.non2xx === down.requests;
    add('S6: every answer is the contract (502 application/problem+json)', `${down.problemJson ?? 0} of ${down.requests} (${statusList(down)})`, contract ? 'yes' : '**no**');
    const load = view.upstreamLoad(down);
    add(
      'S6: upstream attempts ≤ 1.2× client requests',
      `${loadRatio(load.ratio)} per client request (${load.attempts} for ${down.requests})${view.results.run.connectsCounted ? '' : '; connection attempts not counted'}`,
      view.results.run.connectsCounted ? (load.ratio <= 1.2 ? 'yes' : '**no**') : 'not measured',
    );
  }
  return ['### The targets, honestly', '', '| target | result | met? |', '|---|---|---|', ...rows, ''];
}

function balanceSection(view: FaultView): string[] {
  const { defaultBalance } = view.results.run;
  const modes = (['least-request', 'round-robin', 'peak-ewma'] as const).flatMap((balance) => {
    const row = view.balanceRow('S4', balance);
    return row === undefined ? [] : [{ balance, row }];
  });
  if (modes.length === 0) return [];
  const lines = [
    '### Which balancer by default (S4)',
    '',
    '| balance | req/s | p50 ms | p99 ms | requests to the slow replica |',
    '|---|---|---|---|---|',
    ...modes.map(({ balance, row }) => {
      const total = row.replicas.reduce((a, b) => a + b, 0);
      const slow = row.replicas[2] ?? 0;
      return `| \`${balance}\`${balance === defaultBalance ? ' (the default)' : ''} | ${spreadRps(row.rps)} | ${ms(row.p50)} | ${spreadMs(row.p99)} | ${slow} of ${total} (${share(slow, total)}) |`;
    }),
    '',
  ];
  const least = modes.find((m) => m.balance === 'least-request')?.row;
  const ewma = modes.find((m) => m.balance === 'peak-ewma')?.row;
  if (least !== undefined && ewma !== undefined && ewma.p99.median > 0 && ewma.rps.median > 0) {
    const p99 = least.p99.median / ewma.p99.median;
    const throughput = least.rps.median / ewma.rps.median;
    let verdict: string;
    if (p99 <= 1.05 && throughput >= 0.95) verdict = `\`least-request\` is equal or better than \`peak-ewma\` here (p99 ${times(p99)}, req/s ${times(throughput)})`;
    else if (p99 > 1.05) verdict = `\`peak-ewma\` is better here: \`least-request\`'s p99 is ${times(p99)} of it (req/s ${times(throughput)})`;
    else verdict = `\`least-request\`'s p99 is level with \`peak-ewma\`'s (${times(p99)}) but it serves ${times(throughput)} the req/s`;
    lines.push(...wrap(`With one replica ${view.results.run.slowMs} ms slower, ${verdict}. The default in the build measured is \`${defaultBalance}\`.`), '');
  }
  return lines;
}

/** Everything between BENCHMARKS.md's fault markers. */
export function faultsBlock(results: FaultResults): string {
  const view = new FaultView(results);
  const { run } = results;
  const seconds = [...new Set(results.scenarios.map((s) => s.seconds))];
  const longest = results.scenarios.find((s) => s.seconds !== results.scenarios[0]?.seconds);
  const runLineParts = [
    `**The run:** ${run.description}`,
    `Node ${run.node}, ${run.machine}; ${run.rounds} interleaved ${run.rounds === 1 ? 'round' : 'rounds'} × ${seconds.length === 1 ? `${seconds[0] ?? 0} s` : `${results.scenarios[0]?.seconds ?? 0} s (${longest?.id ?? ''}: ${longest?.seconds ?? 0} s)`} per contender and scenario, ${run.connections} keep-alive connections, 1 KiB responses; ${run.totalSeconds ?? '?'} s in all.`,
    run.nginx === null ? 'nginx was not installed and is left out.' : `nginx ${run.nginx} was installed and is included.`,
    run.connectsCounted ? 'Connection attempts were counted with tcpdump.' : 'Connection attempts were not counted (no tcpdump).',
  ];
  if (run.otherCpu !== null) {
    runLineParts.push(
      run.otherCpu >= 0.1
        ? `Other processes used ${Math.round(run.otherCpu * 100)} % of the machine's CPU during the run (load average ${run.load[0]} before it): the figures are noisy; read the min–max ranges.`
        : `Other processes used ${Math.round(run.otherCpu * 100)} % of the machine's CPU during the run.`,
    );
  }
  if (run.smoke) runLineParts.unshift('**A smoke run: these figures mean nothing.**');
  const method = [
    `- **Replicas:** three \`node:http\` servers on loopback, one process, one port each, answering \`GET /1k\` with 1 KiB. Each counts the requests it receives. In the faulty scenarios replica 3 misbehaves: its port closed (its connections cut), a 503 for every request, every response ${run.slowMs} ms late, or up and down (closed) every ${run.flapMs / 1000} s from the start of the run, or (S7) killed and restarted once.`,
    `- **Contenders,** each in its own process: resilient-proxy as \`createProxy({ target: [r1, r2, r3], name })\` on bare \`node:http\` (the defaults; \`balance\` is \`${run.defaultBalance}\`), and in S1 with one target; in S4 also with the other \`balance\` modes; nginx with one worker, an \`upstream\` block of the three (default \`max_fails=1 fail_timeout=10s\`, \`keepalive 32\`, HTTP/1.1 with \`Connection ""\`), \`proxy_next_upstream error timeout http_503\`; http-proxy-middleware 3 on Express 5 with a \`router\` cycling through the three (and a keep-alive agent, as in the throughput benchmark).`,
    '- **Fresh state for every run:** before each measured run the contender starts a fresh proxy (nginx: a fresh process) and the replicas take the scenario\'s modes, so each run sees the fault from its first request, learning included. Rounds rotate the order of contenders.',
    '- **Columns:** client requests are responses plus socket errors and timeouts, over all rounds; non-2xx and socket errors are summed over rounds; req/s and latency count every response, whatever its status (median of the rounds, min–max in parentheses); requests per replica are summed over rounds.',
  ];
  return [
    '## Under faults: a group of three replicas',
    '',
    ...wrap(
      'What a group of upstreams does for clients when one replica (or every one) misbehaves, measured by `bench/faults.ts`; its figures come from `bench/results/faults.json`, rendered here by `npm run bench:docs`.',
    ),
    '',
    '```sh',
    `npm run bench:faults     # builds, measures (${run.smoke || run.totalSeconds === null ? 'minutes' : `about ${Math.max(1, Math.round(run.totalSeconds / 60))} minutes`}), writes bench/results/faults.json`,
    'npm run bench:docs       # rewrites this section from it',
    '```',
    '',
    ...wrap(runLineParts.join(' ')),
    '',
    ...method.flatMap((bullet) => wrap(bullet, '  ')),
    '',
    ...results.scenarios.flatMap((scenario) => scenarioTable(view, scenario)),
    ...faultTargets(view),
    ...balanceSection(view),
    ...(run.notes.length === 0 ? [] : ['### Notes', '', ...run.notes.flatMap((note) => wrap(`- ${note}`, '  ')), '']),
  ]
    .join('\n')
    .trimEnd();
}

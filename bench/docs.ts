// `npm run bench:docs`: rewrites the figures in README.md and BENCHMARKS.md
// from bench/results/*.json. Each section below is a pair of marker lines in a
// document (`<!-- name:start -->`, `<!-- name:end -->`), the results file it
// is rendered from, and its renderer in bench/sections/. Everything outside
// the markers is left alone.
//
//   npm run bench:docs                 rewrite both files
//   npm run bench:docs -- --check      exit 1 if either file is out of date
//   npm run bench:docs -- --print      print the blocks, write nothing
//   npm run bench:docs -- --from FILE  another results file for the `bench` blocks
//                                      (a smoke run's file is only ever printed)
//
// Adding a benchmark's section: write bench/results/<name>.json from the
// benchmark, a renderer in bench/sections/<name>.ts, one line in SECTIONS,
// and the two marker lines in the document.

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { ROOT, readFaultResults, readResults } from './results.js';
import { cpuAloneBlock, cpuBlock, type CpuResults, type ProfileResults } from './sections/cpu.js';
import { faultsBlock } from './sections/faults.js';
import { fleetBlock, type FleetResults } from './sections/fleet.js';
import { tailBlock, type TailResults } from './sections/tail.js';
import { benchmarksBlock, nodeOverBare, readmeBlock, type SideBySide } from './sections/throughput.js';
import { breakerAttackBlock, type BreakerAttackResults } from './sections/breaker-attack.js';
import { collapseBlock, collapseSummary, type CollapseResults } from './sections/collapse.js';
import { otelCostBlock, type OtelCostResults } from './sections/otel-cost.js';
import { rewriteCostBlock, type RewriteCostResults } from './sections/rewrite-cost.js';
import { staleCostBlock, type StaleCostResults } from './sections/stale-cost.js';
import { staleMemoryBlock, type StaleMemoryResults } from './sections/stale-memory.js';
import { transformBombBlock, type TransformBombResults } from './sections/transform-bomb.js';
import { websocketBlock, type WebSocketResults } from './sections/websocket.js';

const args = process.argv.slice(2);
const check = args.includes('--check');
const print = args.includes('--print');
const fromIndex = args.indexOf('--from');
const latest = fromIndex === -1 ? join(ROOT, 'bench/results/latest.json') : resolve(args[fromIndex + 1] ?? '');

const json = (name: string): unknown => JSON.parse(readFileSync(join(ROOT, 'bench/results', name), 'utf8'));
const results = readResults(latest);
const profile = existsSync(join(ROOT, 'bench/results/profile.json')) ? (json('profile.json') as ProfileResults) : null;

/** bench/cpu.ts's node:http, Express and Fastify pairs, for the README's lines beside `npm run bench`'s figures. */
function readmePairs(): ReadonlyMap<string, SideBySide> {
  const pairs = (json('cpu.json') as CpuResults).pairs.filter((p) => ['node', 'express', 'fastify'].includes(p.id));
  return new Map(pairs.map((p) => [p.id, { rpsRatio: p.rpsRatio.median, cpuRatio: p.cpuRatio.median }]));
}

interface Section {
  readonly doc: 'README.md' | 'BENCHMARKS.md' | `docs/${string}.md`;
  readonly name: string;
  /** The results file and the command that writes it, for the note above the block. */
  readonly from: string;
  readonly command: string;
  readonly render: () => string;
  /** A smoke run's figures never go into the docs. */
  readonly smoke?: boolean;
}

const SECTIONS: readonly Section[] = [
  {
    doc: 'README.md',
    name: 'bench',
    from: `${relative(ROOT, latest)} and bench/results/cpu.json`,
    command: 'npm run bench` or `npx tsx bench/cpu.ts',
    render: () => readmeBlock(results, readmePairs()),
    smoke: results.run.smoke,
  },
  { doc: 'docs/many-instances.md', name: 'fleet', from: 'bench/results/fleet.json', command: 'npx tsx bench/fleet.ts', render: () => fleetBlock(json('fleet.json') as FleetResults) },
  { doc: 'BENCHMARKS.md', name: 'fleet', from: 'bench/results/fleet.json', command: 'npx tsx bench/fleet.ts', render: () => fleetBlock(json('fleet.json') as FleetResults) },
  { doc: 'BENCHMARKS.md', name: 'bench', from: relative(ROOT, latest), command: 'npm run bench', render: () => benchmarksBlock(results), smoke: results.run.smoke },
  { doc: 'BENCHMARKS.md', name: 'cpu', from: 'bench/results/cpu.json', command: 'RP_OLD_BUILD=/tmp/a3c2e01/dist/index.js npx tsx bench/cpu.ts', render: () => cpuBlock(json('cpu.json') as CpuResults, profile) },
  { doc: 'BENCHMARKS.md', name: 'cpu-alone', from: 'bench/results/cpu-alone.json', command: 'RP_OLD_BUILD=/tmp/a3c2e01/dist/index.js npx tsx bench/cpu.ts --alone --windows 20 (its verdict also reads cpu.json, profile.json and latest.json)', render: () => cpuAloneBlock(json('cpu-alone.json') as CpuResults, json('cpu.json') as CpuResults, profile, results.run.smoke ? null : nodeOverBare(results)) },
  { doc: 'BENCHMARKS.md', name: 'faults', from: 'bench/results/faults.json', command: 'npm run bench:faults', render: () => faultsBlock(readFaultResults()) },
  { doc: 'BENCHMARKS.md', name: 'tail', from: 'bench/results/tail.json', command: 'npx tsx bench/tail.ts', render: () => tailBlock(json('tail.json') as TailResults) },
  { doc: 'BENCHMARKS.md', name: 'otel-cost', from: 'bench/results/otel-cost.json', command: 'npx tsx bench/otel-cost.ts --baseline 881d500', render: () => otelCostBlock(json('otel-cost.json') as OtelCostResults) },
  { doc: 'BENCHMARKS.md', name: 'rewrite-cost', from: 'bench/results/rewrite-cost.json', command: 'npx tsx bench/rewrite-cost.ts', render: () => rewriteCostBlock(json('rewrite-cost.json') as RewriteCostResults) },
  { doc: 'BENCHMARKS.md', name: 'transform-bomb', from: 'bench/results/transform-bomb.json', command: 'npx tsx bench/transform-bomb.ts', render: () => transformBombBlock(json('transform-bomb.json') as TransformBombResults) },
  { doc: 'BENCHMARKS.md', name: 'stale-cost', from: 'bench/results/stale-cost.json', command: 'npx tsx bench/stale-cost.ts', render: () => staleCostBlock(json('stale-cost.json') as StaleCostResults) },
  { doc: 'BENCHMARKS.md', name: 'websocket', from: 'bench/results/websocket.json', command: 'npx tsx bench/websocket.ts', render: () => websocketBlock(json('websocket.json') as WebSocketResults) },
  { doc: 'BENCHMARKS.md', name: 'breaker-attack', from: 'bench/results/breaker-attack.json', command: 'npx tsx bench/breaker-attack.ts --before <abdcc12 build>', render: () => breakerAttackBlock(json('breaker-attack.json') as BreakerAttackResults) },
  { doc: 'BENCHMARKS.md', name: 'collapse', from: 'bench/results/collapse.json', command: 'npx tsx bench/collapse.ts', render: () => collapseBlock(json('collapse.json') as CollapseResults) },
  { doc: 'docs/stale-on-error.md', name: 'stale-memory', from: 'bench/results/stale-memory.json', command: 'npx tsx bench/stale-memory.ts', render: () => staleMemoryBlock(json('stale-memory.json') as StaleMemoryResults) },
  { doc: 'docs/tail-and-overload.md', name: 'collapse', from: 'bench/results/collapse.json', command: 'npx tsx bench/collapse.ts', render: () => collapseSummary(json('collapse.json') as CollapseResults) },
];

if (print) {
  for (const section of SECTIONS) console.log(`--- ${section.doc} <!-- ${section.name}:start -->\n${section.render()}\n`);
  process.exit(0);
}
const smoke = SECTIONS.find((section) => section.smoke === true);
if (smoke !== undefined) {
  console.error(`${smoke.from} is a smoke run: its figures mean nothing and do not go into the docs (--print shows them).`);
  process.exit(1);
}

/** Where a line that is exactly `marker` starts, for every such line. */
function markerLines(text: string, marker: string): number[] {
  const found: number[] = [];
  let at = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === marker) found.push(at);
    at += line.length + 1;
  }
  return found;
}

/** `text` with what lies between the section's markers replaced by its block. */
function replaceBlock(text: string, section: Section): string {
  const start = `<!-- ${section.name}:start -->`;
  const end = `<!-- ${section.name}:end -->`;
  const starts = markerLines(text, start);
  const ends = markerLines(text, end);
  const [from] = starts;
  const [to] = ends;
  if (starts.length !== 1 || ends.length !== 1 || from === undefined || to === undefined || to < from) {
    throw new Error(`${section.doc}: expected one line ${start} and, after it, one line ${end}`);
  }
  const note = `<!-- Generated by \`npm run bench:docs\` from ${section.from}. Edit bench/sections/, or re-run \`${section.command}\`, not this text. -->`;
  return `${text.slice(0, from)}${start}\n${note}\n\n${section.render()}\n\n${text.slice(to)}`;
}

// Everything is checked before anything is written.
const updates = [...new Set(SECTIONS.map((section) => section.doc))].map((doc) => {
  const file = join(ROOT, doc);
  const text = readFileSync(file, 'utf8');
  return { doc, file, text, next: SECTIONS.filter((section) => section.doc === doc).reduce(replaceBlock, text) };
});

let stale = 0;
for (const { doc, file, text, next } of updates) {
  if (next === text) continue;
  stale += 1;
  if (check) console.error(`${doc} is out of date with bench/results/: run npm run bench:docs`);
  else {
    writeFileSync(file, next);
    console.log(`${doc}: figures rewritten from bench/results/`);
  }
}
if (check && stale > 0) process.exit(1);
if (stale === 0) console.log('README.md and BENCHMARKS.md already match bench/results/');

// CPU time per request of the proxy process, measured in simultaneous pairs:
// the two contenders of a pair run at the same time, both pinned to core 0,
// loaded at the same time by autocannon in this process (pinned with the
// upstreams to the other core), so whatever else the machine does falls on
// both alike. Each window asks both processes for their process.cpuUsage()
// (user + system, every thread) before and after, and divides by the requests
// each served; the figure of a pair is the median of its per-window ratios,
// with their spread. The same pairs' request counts give the req/s ratio, and
// each side's event loop utilisation how much of the window it waited.
//
//   npx tsx bench/cpu.ts                 measure, write bench/results/cpu.json
//   npx tsx bench/cpu.ts --smoke         one short window of one pair, writes nothing
//   npx tsx bench/cpu.ts hooks group     only these pairs, printed, nothing written
//   npx tsx bench/cpu.ts pools origins   the pairs that explain a group's cost (never in the default run)
//   npx tsx bench/cpu.ts --windows 25 …  more windows (9 by default): a narrower median for an A/B
//   npx tsx bench/cpu.ts --connections 64 …   another load (32 connections to each contender by default)
//   npx tsx bench/cpu.ts --lives 1 …     the windows in one process pair (spread over 3 fresh pairs by default)
//   npx tsx bench/cpu.ts --profile-pair group   both contenders of a pair under --cpu-prof at once: the
//                                        functions whose time differs most between them, printed
//   npx tsx bench/cpu.ts --alone         instead: issue 20's own method, one contender at a time on
//                                        the pinned core, rounds interleaved; writes cpu-alone.json
//   npx tsx bench/cpu.ts --profile DIR   instead: each contender alone under
//                                        --cpu-prof, the top self-time functions
//                                        written to bench/results/profile.json
//
// The older build (a3c2e01, the target of issue 20) is measured when
// RP_OLD_BUILD names its dist/index.js (see BENCHMARKS.md for the recipe); the
// runner says when it is absent. Needs `taskset` (util-linux) and two cores.

import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import type { Kind } from './servers.js';
import { measuredCommit, ROOT } from './results.js';
import type { CpuPair, CpuResults, ProfileResults, ProfileRow } from './sections/cpu.js';

const smoke = process.argv.includes('--smoke');
const alone = process.argv.includes('--alone');
/** The pairs `--alone` measures: the ones its targets were set with. */
const ALONE_PAIRS = ['node', 'old-bare', 'old'];
/** Pairs that explain the group's cost (BENCHMARKS.md, Profiling notes): only run when named. */
const EXPLAIN = ['pools', 'origins'];
const profileIndex = process.argv.indexOf('--profile');
const profileDir = profileIndex === -1 ? null : (process.argv[profileIndex + 1] ?? '');
const profilePairIndex = process.argv.indexOf('--profile-pair');
const profilePairId = profilePairIndex === -1 ? null : (process.argv[profilePairIndex + 1] ?? '');
// Pair ids given on the command line: measure only those, print, write nothing.
const only = process.argv.slice(2).filter((arg, i, all) => !arg.startsWith('--') && !['--profile', '--profile-pair', '--windows', '--connections', '--lives'].includes(all[i - 1] ?? ''));
const windowsIndex = process.argv.indexOf('--windows');
const WINDOWS = smoke ? 1 : windowsIndex === -1 ? 9 : Number(process.argv[windowsIndex + 1]);
const livesIndex = process.argv.indexOf('--lives');
/** Fresh process pairs a pair's windows are spread over (simultaneous pairs only). */
const LIVES = Math.min(WINDOWS, livesIndex === -1 ? 3 : Number(process.argv[livesIndex + 1]));
const SECONDS = smoke ? 1 : 3;
const connectionsIndex = process.argv.indexOf('--connections');
const CONNECTIONS = connectionsIndex === -1 ? 32 : Number(process.argv[connectionsIndex + 1]);
const OLD_BUILD = process.env.RP_OLD_BUILD ?? '';
const OLD_LABEL = process.env.RP_OLD_LABEL ?? 'a3c2e01';
const childEnv = { ...process.env, TSX_TSCONFIG_PATH: join(ROOT, 'bench/tsconfig.runtime.json') };
const children: ChildProcess[] = [];
const pinned = cpus().length >= 2;

/** Pins every thread of `pid` to `core`. */
function pin(pid: number, core: number): void {
  if (pinned) execFileSync('taskset', ['-a', '-p', '-c', String(core), String(pid)], { stdio: 'ignore' });
}

interface Server {
  readonly url: string;
  /** Every origin the process listens on (several for `upstream-three-ports`). */
  readonly urls: readonly string[];
  readonly child: ChildProcess;
}

async function server(kind: Kind, target: string, library = '', execArgv: string[] = []): Promise<Server> {
  const env = library === '' ? childEnv : { ...childEnv, RP_LIBRARY: library };
  const child = fork(join(ROOT, 'bench/servers.ts'), [kind, target], { execArgv: [...execArgv, '--import', 'tsx'], env, stdio: 'inherit' });
  children.push(child);
  const [message] = (await once(child, 'message')) as [{ port: number; ports: number[] }];
  return { url: `http://127.0.0.1:${message.port}`, urls: message.ports.map((port) => `http://127.0.0.1:${port}`), child };
}

async function stop(server: Server, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (server.child.exitCode !== null) return;
  server.child.kill(signal);
  await once(server.child, 'exit');
}

interface Usage {
  /** CPU time so far, µs. */
  readonly cpu: number;
  /** The event loop's time so far, ms: busy, and idle waiting for I/O. */
  readonly active: number;
  readonly idle: number;
}

/** The process's CPU time and event loop time so far. */
async function usage(server: Server): Promise<Usage> {
  server.child.send('cpu');
  for (;;) {
    const [message] = (await once(server.child, 'message')) as [{ cpu?: NodeJS.CpuUsage; loop?: { active: number; idle: number } }];
    if (message.cpu !== undefined) return { cpu: message.cpu.user + message.cpu.system, active: message.loop?.active ?? 0, idle: message.loop?.idle ?? 0 };
  }
}

/** The share of a window its event loop was not waiting in its poll: below 1, it waited for the load or for the core it shares. */
const busy = (before: Usage, after: Usage): number => (after.active - before.active) / Math.max(1e-9, after.active - before.active + after.idle - before.idle);

async function load(url: string, seconds: number): Promise<number> {
  const result = await autocannon({ url: `${url}/1k`, connections: CONNECTIONS, duration: seconds, pipelining: 1 });
  if (!smoke && (result.errors > 0 || result.non2xx > 0 || result.timeouts > 0)) throw new Error(`${url}: ${result.errors} errors, ${result.non2xx} non-2xx, ${result.timeouts} timeouts`);
  return result.requests.total;
}

interface Contender {
  readonly label: string;
  readonly kind: Kind;
  /** The group's hosts instead of the single upstream: three upstream processes, or one process's three origins. */
  readonly group?: true | 'one-process';
  /** Another build's dist/index.js. */
  readonly library?: string;
}

const bare: Contender = { label: 'bare undici proxy on node:http', kind: 'bare-undici' };
const node: Contender = { label: 'resilient-proxy, node:http, defaults', kind: 'rp-node' };
const old: Contender = { label: `resilient-proxy at ${OLD_LABEL}, node:http`, kind: 'rp-node', library: OLD_BUILD };

/** [id, what the pair shows, ours, theirs, target ratio of req/s (ours over theirs; of CPU per request for the pairs in CPU_TARGETS) or null] */
const PAIRS: [string, string, Contender, Contender, number | null][] = [
  ['node', 'node:http against a hand-written undici proxy', node, bare, 1.25],
  ['express', 'Express against http-proxy-middleware', { label: 'resilient-proxy, Express, defaults', kind: 'rp-express-default' }, { label: 'http-proxy-middleware, Express', kind: 'hpm-express' }, 1.4],
  ['fastify', 'Fastify adapter against @fastify/http-proxy', { label: 'resilient-proxy, Fastify adapter', kind: 'rp-fastify' }, { label: '@fastify/http-proxy', kind: 'fastify-http-proxy' }, 1.2],
  ['old', `this build against ${OLD_LABEL}`, node, old, 1],
  ['old-bare', `${OLD_LABEL} against the bare undici proxy`, old, bare, null],
  ['group', 'a group of three hosts against a single target', { label: 'resilient-proxy, group of three', kind: 'rp-group', group: true }, node, 0.97],
  ['same', 'the same build twice: the noise of a pair', node, node, null],
  // Where a group's cost lies (run only when named, see EXPLAIN).
  ['pools', 'one target over three pools in turn against one pool', { label: 'three pools', kind: 'rp-three-pools' }, { label: 'one pool', kind: 'rp-one-pool' }, null],
  ['origins', "a group of three origins of one upstream process against a single target", { label: 'group of three, one upstream process', kind: 'rp-group', group: 'one-process' }, node, null],
  // The floor of the design: undici's dispatch() and a handler, nothing else. How much of the bare
  // proxy's cost is its way of calling undici, and what resilient-proxy's defaults cost above that floor.
  ['floor', 'a dispatch() proxy with no features against the bare undici proxy', { label: 'dispatch() and a handler, nothing else', kind: 'floor-dispatch' }, bare, null],
  ['floor-node', 'resilient-proxy against a dispatch() proxy with no features', node, { label: 'dispatch() and a handler, nothing else', kind: 'floor-dispatch' }, null],
  ['stale', 'staleIfError on against off', { label: 'staleIfError: true', kind: 'rp-stale' }, node, null],
  ['channels', 'a subscriber on every diagnostics channel against none', { label: 'every channel subscribed', kind: 'rp-channels' }, node, null],
  ['hooks', 'a headers.request hook, onFailure and onRetry against none', { label: 'request hook + hooks', kind: 'rp-hooks' }, node, null],
];

/** Pairs whose target is CPU per request at most the target (issue 20: at or below a3c2e01's), not req/s. */
const CPU_TARGETS = new Set(['old']);

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] ?? Number.NaN) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
};
const spread = (values: readonly number[]) => ({ median: median(values), min: Math.min(...values), max: Math.max(...values) });
const round = (value: number, digits = 3): number => Number(value.toFixed(digits));

/** One upstream process listening on three ports, started when a pair needs it. */
let threePorts: Server | null = null;

async function start(contender: Contender, upstreams: readonly string[], execArgv: string[] = []): Promise<Server> {
  if (contender.group === 'one-process') threePorts ??= await server('upstream-three-ports', '');
  const target = contender.group === true ? upstreams.join(',') : contender.group === 'one-process' ? (threePorts?.urls ?? []).join(',') : (upstreams[0] ?? '');
  const started = await server(contender.kind, target, contender.library, execArgv);
  pin(started.child.pid ?? 0, 0);
  return started;
}

/** What the windows of one pair measured, window by window. */
class Samples {
  readonly cpuRatios: number[] = [];
  readonly rpsRatios: number[] = [];
  readonly oursMicros: number[] = [];
  readonly theirsMicros: number[] = [];
  readonly oursBusy: number[] = [];
  readonly theirsBusy: number[] = [];

  /** One window: each side's usage before and after, and the requests it served. */
  add(ours: { before: Usage; after: Usage; requests: number }, theirs: { before: Usage; after: Usage; requests: number }): void {
    const perA = (ours.after.cpu - ours.before.cpu) / Math.max(1, ours.requests);
    const perB = (theirs.after.cpu - theirs.before.cpu) / Math.max(1, theirs.requests);
    this.oursMicros.push(perA);
    this.theirsMicros.push(perB);
    this.cpuRatios.push(perA / perB);
    this.rpsRatios.push(ours.requests / Math.max(1, theirs.requests));
    this.oursBusy.push(busy(ours.before, ours.after));
    this.theirsBusy.push(busy(theirs.before, theirs.after));
  }
}

async function measurePair(id: string, title: string, ours: Contender, theirs: Contender, target: number | null, upstreams: readonly string[]): Promise<CpuPair> {
  const samples = new Samples();
  // The windows are spread over fresh processes: what V8 happened to compile
  // in one process pair moves its every window alike, and a run's figure
  // must not rest on one such draw.
  for (let life = 0; life < LIVES; life += 1) {
    const a = await start(ours, upstreams);
    const b = await start(theirs, upstreams);
    await Promise.all([load(a.url, smoke ? 0.5 : 2), load(b.url, smoke ? 0.5 : 2)]); // warm-up, not counted
    for (let window = life; window < WINDOWS; window += LIVES) {
      const [a0, b0] = await Promise.all([usage(a), usage(b)]);
      // The load that starts first swaps every window: neither side gets a head start every time.
      const [na, nb] = window % 2 === 0 ? await Promise.all([load(a.url, SECONDS), load(b.url, SECONDS)]) : ((await Promise.all([load(b.url, SECONDS), load(a.url, SECONDS)])).reverse() as [number, number]);
      const [a1, b1] = await Promise.all([usage(a), usage(b)]);
      samples.add({ before: a0, after: a1, requests: na }, { before: b0, after: b1, requests: nb });
    }
    await stop(a);
    await stop(b);
  }
  return pairRow(id, title, ours, theirs, target, samples);
}

/**
 * Issue 20's own method: the two contenders of a pair take turns, one at a
 * time on the pinned core with the other idle, for `WINDOWS` rounds, the
 * order swapped every round. req/s is then each contender's throughput alone
 * on one core.
 */
async function measureAlone(id: string, title: string, ours: Contender, theirs: Contender, target: number | null, upstreams: readonly string[]): Promise<CpuPair> {
  const a = await start(ours, upstreams);
  const b = await start(theirs, upstreams);
  await load(a.url, 2);
  await load(b.url, 2);
  const samples = new Samples();
  const turn = async (server: Server): Promise<{ before: Usage; after: Usage; requests: number }> => {
    const before = await usage(server);
    const requests = await load(server.url, SECONDS);
    return { before, after: await usage(server), requests };
  };
  for (let round = 0; round < WINDOWS; round += 1) {
    const first = round % 2 === 0 ? await turn(a) : await turn(b);
    const second = round % 2 === 0 ? await turn(b) : await turn(a);
    const [x, y] = round % 2 === 0 ? [first, second] : [second, first];
    samples.add(x, y);
  }
  await stop(a);
  await stop(b);
  return pairRow(id, title, ours, theirs, target, samples);
}

function pairRow(id: string, title: string, ours: Contender, theirs: Contender, target: number | null, samples: Samples): CpuPair {
  const cpu = spread(samples.cpuRatios);
  const rps = spread(samples.rpsRatios);
  const result: CpuPair = {
    id,
    title,
    ours: ours.label,
    theirs: theirs.label,
    target,
    targetOn: CPU_TARGETS.has(id) ? 'cpu' : 'rps',
    cpuRatio: { median: round(cpu.median), min: round(cpu.min), max: round(cpu.max) },
    rpsRatio: { median: round(rps.median), min: round(rps.min), max: round(rps.max) },
    oursMicros: round(median(samples.oursMicros), 1),
    theirsMicros: round(median(samples.theirsMicros), 1),
    oursBusy: round(median(samples.oursBusy)),
    theirsBusy: round(median(samples.theirsBusy)),
  };
  console.log(`${id.padEnd(9)} cpu/req ${result.cpuRatio.median.toFixed(3)} (${result.cpuRatio.min.toFixed(3)}–${result.cpuRatio.max.toFixed(3)})  req/s ${result.rpsRatio.median.toFixed(3)}  ${result.oursMicros} µs against ${result.theirsMicros} µs  loop busy ${result.oursBusy} / ${result.theirsBusy}`);
  return result;
}

/** Where a frame's code comes from, for the per-request totals. */
function origin(url: string, fn: string): string {
  const module = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
  if (module !== undefined) return ['express', 'router', 'fastify', 'http-proxy', 'http-proxy-middleware', 'undici'].includes(module) || module.startsWith('@fastify') ? module : 'other packages';
  if (url.includes('/dist/')) return 'resilient-proxy';
  if (url.startsWith('node:') || url === '' || !url.includes('/')) return fn.startsWith('(') ? fn : 'Node';
  return 'bench';
}

/** Self time per request of each function of a .cpuprofile, over its last `seconds` (the measured load). */
function topSelf(file: string, seconds: number, requests: number, count: number): Omit<ProfileResults['rows'][number], 'label'> {
  interface Node {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
  }
  const profile = JSON.parse(readFileSync(file, 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[]; endTime: number; startTime: number };
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  const origins = new Map<string, number>();
  let at = profile.startTime;
  const from = profile.endTime - seconds * 1e6;
  profile.samples.forEach((id, i) => {
    at += profile.timeDeltas[i] ?? 0;
    const frame = byId.get(id)?.callFrame;
    const weight = profile.timeDeltas[i + 1] ?? 0;
    if (at < from || frame === undefined || frame.functionName === '(idle)') return;
    const where = frame.url === '' ? '' : `${frame.url.replace(/^.*\/node_modules\//, '').replace(/^file:\/\/.*\/(dist|bench)\//, '$1/').replace(/^node:/, '')}:${frame.lineNumber + 1}`;
    const key = `${frame.functionName === '' ? '(anonymous)' : frame.functionName} ${where}`.trim();
    self.set(key, (self.get(key) ?? 0) + weight);
    const from_ = origin(frame.url, frame.functionName);
    origins.set(from_, (origins.get(from_) ?? 0) + weight);
  });
  const perRequest = (micros: number): number => round(micros / Math.max(1, requests), 2);
  const total = [...self.values()].reduce((sum, v) => sum + v, 0);
  return {
    requests,
    micros: perRequest(total),
    origins: [...origins.entries()].sort((x, y) => y[1] - x[1]).map(([name, micros]) => ({ fn: name, micros: perRequest(micros) })),
    top: [...self.entries()]
      .sort((x, y) => y[1] - x[1])
      .slice(0, count)
      .map(([fn, micros]) => ({ fn, micros: perRequest(micros) })),
  };
}

/**
 * `--profile-pair ID`: both contenders of one pair under `--cpu-prof` at the
 * same time, as the pair is measured, then the functions whose self time per
 * request differs most between them, each way. Printed only.
 */
async function profilePair(id: string, upstreams: readonly string[]): Promise<void> {
  const pair = PAIRS.find(([pairId]) => pairId === id);
  if (pair === undefined) throw new TypeError(`--profile-pair: no pair ${id}`);
  const [, title, ours, theirs] = pair;
  const seconds = 15;
  const dirs = ['ours', 'theirs'].map((side) => join(tmpdir(), `resilient-proxy-profile-${process.pid}-${side}`));
  for (const dir of dirs) mkdirSync(dir, { recursive: true });
  const a = await start(ours, upstreams, ['--cpu-prof', '--cpu-prof-interval', '500', '--cpu-prof-dir', dirs[0] ?? '']);
  const b = await start(theirs, upstreams, ['--cpu-prof', '--cpu-prof-interval', '500', '--cpu-prof-dir', dirs[1] ?? '']);
  await Promise.all([load(a.url, 3), load(b.url, 3)]);
  const [na, nb] = await Promise.all([load(a.url, seconds), load(b.url, seconds)]);
  await Promise.all([stop(a, 'SIGINT'), stop(b, 'SIGINT')]);
  const [pa, pb] = [na, nb].map((requests, i) => {
    const dir = dirs[i] ?? '';
    const [file] = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
    if (file === undefined) throw new Error(`no profile in ${dir}`);
    const profiled = topSelf(join(dir, file), seconds, requests, Number.POSITIVE_INFINITY);
    rmSync(dir, { recursive: true, force: true });
    return profiled;
  }) as [ReturnType<typeof topSelf>, ReturnType<typeof topSelf>];
  const byFn = (rows: readonly ProfileRow[]): Map<string, number> => new Map(rows.map((r) => [r.fn, r.micros]));
  const [ma, mb] = [byFn(pa.top), byFn(pb.top)];
  const diffs = [...new Set([...ma.keys(), ...mb.keys()])].map((fn) => ({ fn, a: ma.get(fn) ?? 0, b: mb.get(fn) ?? 0 })).sort((x, y) => y.a - y.b - (x.a - x.b));
  const show = (d: { fn: string; a: number; b: number }): string => `  ${(d.a - d.b).toFixed(2).padStart(6)}  ${d.a.toFixed(2).padStart(6)} ${d.b.toFixed(2).padStart(6)}  ${d.fn}`;
  const origins = (p: ReturnType<typeof topSelf>): string => p.origins.map((o) => `${o.fn} ${o.micros.toFixed(2)}`).join(', ');
  console.log(`${title}, profiled at once, ${seconds} s, sampled µs of self time per request (profiling slows both alike):`);
  console.log(`${ours.label}: ${pa.micros} µs (${origins(pa)})\n${theirs.label}: ${pb.micros} µs (${origins(pb)})`);
  console.log(`\nMore in ${ours.label} (difference, ours, theirs):\n${diffs.slice(0, 25).map(show).join('\n')}`);
  console.log(`\nMore in ${theirs.label}:\n${diffs.slice(-25).reverse().map(show).join('\n')}`);
}

async function profiles(dir: string, upstreams: readonly string[]): Promise<void> {
  const contenders = [...new Map(PAIRS.filter(([id]) => !EXPLAIN.includes(id)).flatMap(([, , a, b]) => [a, b]).map((c) => [`${c.kind}:${c.library ?? ''}`, c])).values()].filter((c) => c.library !== '');
  const seconds = 5;
  const rows: ProfileResults['rows'][number][] = [];
  for (const contender of contenders) {
    const out = join(dir, contender.label.replace(/[^a-z0-9]+/gi, '-'));
    rmSync(out, { recursive: true, force: true });
    mkdirSync(out, { recursive: true });
    const s = await start(contender, upstreams, ['--cpu-prof', '--cpu-prof-interval', '250', '--cpu-prof-dir', out]);
    await load(s.url, 3);
    const requests = await load(s.url, seconds);
    await stop(s, 'SIGINT');
    const [file] = readdirSync(out).filter((f) => f.endsWith('.cpuprofile'));
    if (file === undefined) throw new Error(`no profile in ${out}`);
    const row = { label: contender.label, ...topSelf(join(out, file), seconds, requests, 15) };
    rows.push(row);
    const show = (r: ProfileRow): string => `  ${r.micros.toFixed(2).padStart(6)} µs  ${r.fn}`;
    console.log(`\n${row.label}: ${row.micros} µs per request\n${row.origins.map(show).join('\n')}\n${row.top.map(show).join('\n')}`);
  }
  const result: ProfileResults = { date: new Date().toISOString(), node: process.version, seconds, rows };
  writeFileSync(join(ROOT, 'bench/results/profile.json'), `${JSON.stringify(result, null, 2)}\n`);
}

async function main(): Promise<void> {
  if (!existsSync(join(ROOT, 'dist/index.js'))) throw new Error('Build first: npm run build.');
  if (pinned) pin(process.pid, 1);
  const upstreams: string[] = [];
  // Three for the group; a smoke run (one pair, no group) needs one.
  for (let i = 0; i < (smoke ? 1 : 3); i += 1) upstreams.push((await server('upstream', '')).url);
  if (profileDir !== null) return profiles(profileDir, upstreams);
  if (profilePairId !== null) return profilePair(profilePairId, upstreams);
  const notes: string[] = [];
  if (!pinned) notes.push('One core only: nothing pinned.');
  if (OLD_BUILD === '' || !existsSync(OLD_BUILD)) notes.push(`${OLD_LABEL} not measured: RP_OLD_BUILD does not name its dist/index.js.`);
  const started = performance.now();
  const pairs: CpuPair[] = [];
  // A smoke run proves the method on one pair.
  const wanted = only.length > 0 ? only : alone ? ALONE_PAIRS : smoke ? ['node'] : null;
  const chosen = PAIRS.filter(([id]) => (wanted === null ? !EXPLAIN.includes(id) : wanted.includes(id)));
  for (const [id, title, ours, theirs, target] of chosen) {
    if ((ours.library ?? theirs.library) !== undefined && (OLD_BUILD === '' || !existsSync(OLD_BUILD))) continue;
    pairs.push(await (alone ? measureAlone : measurePair)(id, title, ours, theirs, target, upstreams));
  }
  const results: CpuResults = {
    date: new Date().toISOString(),
    commit: measuredCommit() ?? 'unknown',
    node: process.version,
    machine: `${cpus().length} cores`,
    windows: WINDOWS,
    lives: alone ? 1 : LIVES,
    seconds: SECONDS,
    connections: CONNECTIONS,
    totalSeconds: Math.round((performance.now() - started) / 1000),
    notes,
    pairs,
  };
  for (const note of notes) console.log(note);
  if (!smoke && only.length === 0) writeFileSync(join(ROOT, `bench/results/${alone ? 'cpu-alone' : 'cpu'}.json`), `${JSON.stringify(results, null, 2)}\n`);
}

try {
  await main();
} finally {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
}

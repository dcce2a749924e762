// `npm run bench:faults`: proxies in front of a group of three upstream
// replicas while one replica (or every one) misbehaves, side by side in one
// run on loopback. The replicas are one process with three ports
// (bench/fault-servers.ts); every contender runs in its own process; load
// comes from autocannon in this process, keep-alive, fixed concurrency, in
// interleaved rounds. Before each measured run the contender is reset to a
// fresh proxy (no ejection, breaker, latency estimate or pooled connection
// carries over) and the replicas are put in the scenario's modes, so every
// run sees the fault from its start. Replicas count the requests they
// receive; when tcpdump is installed, connection attempts (SYNs) to their
// ports are counted too, which is how attempts on a closed port are seen.
// S7 kills one replica a second into the run and restarts it on the same
// port 5 s later: when each contender stopped trying it (its last SYN), when
// resilient-proxy reported it (its hook), and when it got traffic again.
//
// Writes bench/results/faults.json (`npm run bench:docs` renders
// BENCHMARKS.md's fault section from it) and prints the tables.
// `--smoke` runs about a second of every scenario, to prove the benchmark
// works; its results go to a temporary file, never to faults.json.
// `--out FILE` writes the results elsewhere.

import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, connect, type AddressInfo } from 'node:net';
import { cpus, loadavg, tmpdir, totalmem, type } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import type { Command, HostEvent, ProxyConfig, ReplicaMode, Reply, Restart } from './fault-servers.js';
import { nginxVersion, startNginxIn } from './nginx.js';
import { faultsBlock } from './sections/faults.js';
import { FAULTS, measuredCommit, writeFaultResults, type Balance, type FaultResults, type FaultRow, type FaultScenario, type FaultScenarioId, type Recovery, type Spread } from './results.js';

const smoke = process.argv.includes('--smoke');
const settings = smoke
  ? { rounds: 1, seconds: 1, flapSeconds: 1, connections: 10, flapMs: 250, warmSeconds: 0, killAtMs: 200, downMs: 300, restartCapSeconds: 1, afterFirstMs: 200 }
  : { rounds: 3, seconds: 5, flapSeconds: 6, connections: 50, flapMs: 2000, warmSeconds: 1, killAtMs: 1000, downMs: 5000, restartCapSeconds: 45, afterFirstMs: 1000 };
const SLOW_MS = 300;
/** Far above what two cores can serve; a run that reaches it is reported. */
const MAX_RPS = 50_000;

const outIndex = process.argv.indexOf('--out');
const outFile = outIndex !== -1 ? resolve(process.argv[outIndex + 1] ?? '') : smoke ? join(tmpdir(), 'resilient-proxy-bench-faults-smoke.json') : FAULTS;

const root = fileURLToPath(new URL('..', import.meta.url));
// Children import resilient-proxy by name: without the tsconfig `paths` that
// point the name at src/, Node resolves it to the build in dist/.
const childEnv = { ...process.env, TSX_TSCONFIG_PATH: join(root, 'bench/tsconfig.runtime.json') };
const BALANCES: readonly Balance[] = ['least-request', 'round-robin', 'peak-ewma'];

const children: ChildProcess[] = [];
const notes: string[] = [];
/** Set once the runner ends its children: an exit is then expected. */
let stopping = false;

/** A child process of bench/fault-servers.ts, driven by IPC commands that each get one reply. */
class Child {
  readonly #pending = new Map<number, (reply: Reply) => void>();
  #next = 1;
  readonly ready: Promise<Reply>;

  constructor(
    readonly name: string,
    readonly process: ChildProcess,
  ) {
    this.ready = new Promise((resolveReady, rejectReady) => {
      this.#pending.set(0, resolveReady);
      process.once('exit', (code, signal) => {
        if (stopping) return;
        const error = new Error(`${name} exited (${signal ?? code ?? 'unknown'})`);
        rejectReady(error);
        for (const pending of this.#pending.values()) pending({ id: -1 });
        this.#pending.clear();
      });
    });
    process.on('message', (reply: Reply) => {
      const pending = this.#pending.get(reply.id);
      this.#pending.delete(reply.id);
      pending?.(reply);
    });
  }

  static start(kind: string, config: ProxyConfig | null, name: string): Child {
    const child = fork(join(root, 'bench/fault-servers.ts'), [kind, JSON.stringify(config ?? {})], {
      execArgv: ['--import', 'tsx'],
      env: childEnv,
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    children.push(child);
    return new Child(name, child);
  }

  async request(command: Omit<Extract<Command, { cmd: 'set' }>, 'id'> | { cmd: 'counts' } | { cmd: 'reset' } | { cmd: 'events' }): Promise<Reply> {
    const id = this.#next++;
    const answered = new Promise<Reply>((resolveReply) => this.#pending.set(id, resolveReply));
    this.process.send({ ...command, id });
    const timeout = delay(15_000).then(() => ({ id: -2 }));
    const reply = await Promise.race([answered, timeout]);
    if (reply.id !== id) throw new Error(`${this.name} did not answer ${command.cmd} (${reply.id === -1 ? 'it exited' : 'timed out'})`);
    return reply;
  }

  async stop(): Promise<void> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return;
    const exited = once(this.process, 'exit');
    this.process.kill();
    await exited;
  }
}

async function freePort(): Promise<number> {
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as AddressInfo;
  probe.close();
  await once(probe, 'close');
  return port;
}

/** Resolves true when the port accepts a connection, false when it refuses. */
function knock(port: number): Promise<boolean> {
  return new Promise((resolveKnock) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.destroy();
      resolveKnock(true);
    });
    socket.once('error', () => resolveKnock(false));
  });
}

async function waitForPort(port: number): Promise<void> {
  for (let tries = 0; tries < 100; tries += 1) {
    if (await knock(port)) return;
    await delay(20);
  }
  throw new Error(`nothing listens on ${port}`);
}

/**
 * Counts connection attempts (SYNs without ACK) to the replicas' ports with
 * tcpdump on loopback: the only way to see attempts on a closed port. A
 * fence port, closed, is knocked on and waited for, so that a count read
 * after it includes every attempt made before.
 */
class SynCounter {
  readonly #counts = new Map<number, number>();
  /** When each SYN was seen, ms since the epoch, per port (tcpdump's own timestamps). */
  readonly #times = new Map<number, number[]>();
  #dropped = 0;

  private constructor(
    readonly child: ChildProcess,
    readonly fencePort: number,
  ) {
    let buffered = '';
    child.stdout?.setEncoding('utf8').on('data', (data: string) => {
      buffered += data;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        const port = / > 127\.0\.0\.1\.(\d+):/.exec(line)?.[1];
        if (port === undefined) continue;
        this.#counts.set(Number(port), (this.#counts.get(Number(port)) ?? 0) + 1);
        const at = Number(/^(\d+\.\d+) /.exec(line)?.[1]) * 1000;
        if (!Number.isFinite(at)) continue;
        const times = this.#times.get(Number(port)) ?? [];
        if (times.length === 0) this.#times.set(Number(port), times);
        times.push(at);
      }
    });
    child.stderr?.setEncoding('utf8').on('data', (data: string) => {
      const dropped = /(\d+) packets? dropped by kernel/.exec(data)?.[1];
      if (dropped !== undefined) this.#dropped = Number(dropped);
    });
  }

  static async start(ports: readonly number[]): Promise<SynCounter | string> {
    try {
      execFileSync('tcpdump', ['--version'], { stdio: 'ignore' });
    } catch {
      return 'tcpdump is not installed (apt-get install tcpdump)';
    }
    const fencePort = await freePort();
    const filter = `tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn and (${[...ports, fencePort].map((p) => `dst port ${p}`).join(' or ')})`;
    // A short snapshot and a 32 MiB buffer: with the default 256 KiB snapshot the
    // capture ring holds only a few packets, and a busy machine drops SYNs.
    // -tt: each line starts with its time in seconds since the epoch.
    const child = spawn('tcpdump', ['-i', 'lo', '-n', '-q', '-l', '-tt', '--immediate-mode', '-p', '-s', '96', '-B', '32768', filter], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    const listening = new Promise<boolean>((resolveListening) => {
      let text = '';
      child.stderr.setEncoding('utf8').on('data', (data: string) => {
        text += data;
        if (text.includes('listening on')) resolveListening(true);
      });
      child.once('exit', () => resolveListening(false));
      child.once('error', () => resolveListening(false));
    });
    const ok = await Promise.race([listening, delay(5_000).then(() => false)]);
    if (!ok) {
      child.kill();
      return 'tcpdump could not capture on loopback';
    }
    const counter = new SynCounter(child, fencePort);
    await counter.fence();
    return counter;
  }

  /** Waits until every SYN sent before the call has been counted (at most 2 s). */
  async fence(): Promise<void> {
    const before = this.#counts.get(this.fencePort) ?? 0;
    await knock(this.fencePort);
    for (let waited = 0; waited < 2_000; waited += 5) {
      if ((this.#counts.get(this.fencePort) ?? 0) > before) return;
      await delay(5);
    }
    notes.push('tcpdump: a fence was not seen within 2 s; a connection count may be short.');
  }

  counts(ports: readonly number[]): number[] {
    return ports.map((port) => this.#counts.get(port) ?? 0);
  }

  /** The times (ms since the epoch) of the SYNs to `port` seen in [from, to). */
  between(port: number, from: number, to: number): number[] {
    return (this.#times.get(port) ?? []).filter((at) => at >= from && at < to);
  }

  async stop(): Promise<number> {
    if (this.child.exitCode === null) {
      const exited = once(this.child, 'exit');
      this.child.kill('SIGINT');
      await Promise.race([exited, delay(2_000)]);
    }
    return this.#dropped;
  }
}

interface Contender {
  readonly id: string;
  readonly label: string;
  readonly balance: Balance | null;
  /** A fresh proxy; returns its URL. */
  reset(): Promise<string>;
  /** resilient-proxy: its group's host state changes since the last reset. */
  events?: () => Promise<readonly HostEvent[]>;
  stop(): Promise<void>;
}

async function nodeContender(id: string, label: string, kind: 'rp' | 'hpm', config: ProxyConfig, balance: Balance | null): Promise<{ contender: Contender; first: Reply }> {
  const child = Child.start(kind, config, label);
  const first = await child.ready;
  if (kind === 'rp' && first.library?.includes('/dist/') !== true) throw new Error(`${label} loaded resilient-proxy from ${String(first.library)}, not from dist/`);
  return {
    first,
    contender: {
      id,
      label,
      balance,
      reset: async () => `http://127.0.0.1:${(await child.request({ cmd: 'reset' })).ports?.[0] ?? 0}`,
      ...(kind === 'rp' ? { events: async () => (await child.request({ cmd: 'events' })).events ?? [] } : {}),
      stop: () => child.stop(),
    },
  };
}


/** nginx with an upstream block of the three replicas; a fresh nginx (fresh upstream state) per run. */
function nginxContender(version: string, replicaPorts: readonly number[]): Contender {
  const dir = mkdtempSync(join(tmpdir(), 'rp-bench-faults-nginx-'));
  let child: ChildProcess | null = null;
  const stop = async (): Promise<void> => {
    if (child === null) return;
    const running = child;
    child = null;
    if (running.exitCode !== null || running.signalCode !== null) return;
    const exited = once(running, 'exit');
    running.kill('SIGTERM');
    await exited;
  };
  return {
    id: 'nginx',
    label: `nginx ${version}, upstream block of three`,
    balance: null,
    reset: async () => {
      await stop();
      const port = await freePort();
      const started = startNginxIn(dir, port, replicaPorts, ['proxy_next_upstream error timeout http_503;']);
      children.push(started);
      child = started;
      await waitForPort(port);
      return `http://127.0.0.1:${port}`;
    },
    stop: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Whether @fastify/http-proxy accepts a list of upstreams: tried, not assumed. */
async function fastifyHttpProxyTakesAList(): Promise<string> {
  const { default: Fastify } = await import('fastify');
  const { default: fastifyHttpProxy } = await import('@fastify/http-proxy');
  const app = Fastify();
  try {
    // The types say `upstream: string`: this is the call a user would try.
    await app.register(fastifyHttpProxy, { upstream: ['http://127.0.0.1:1', 'http://127.0.0.1:2'] as unknown as string });
    await app.ready();
    return 'accepted';
  } catch (error) {
    return `rejected: ${(error as { code?: string }).code ?? ''} ${(error as Error).message}`.trim();
  } finally {
    await app.close().catch(() => undefined);
  }
}

interface Sample {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  non2xx: number;
  errors: number;
  statuses: Record<string, number>;
  replicas: number[];
  connects: number[] | null;
  problemJson: number | null;
  codes: Record<string, number> | null;
  /** S7: this run's figures (see Recovery). */
  recovery: { outMs: number | null; lastAttemptMs: number | null; attemptsWhileDown: number | null; firstRequestMs: number | null; runSeconds: number } | null;
}

function header(headers: Record<string, string | string[] | undefined> | undefined, name: string): string {
  for (const [key, value] of Object.entries(headers ?? {})) if (key.toLowerCase() === name) return Array.isArray(value) ? value.join(', ') : (value ?? '');
  return '';
}

/**
 * One autocannon run, bounded in time (its duration, and a watchdog) and in
 * count (MAX_RPS × seconds); `stopWhen`, polled every 100 ms, may end it sooner.
 */
async function load(url: string, seconds: number, contract: boolean, stopWhen?: () => Promise<boolean>): Promise<Omit<Sample, 'replicas' | 'connects' | 'recovery'> & { seconds: number }> {
  const startedAt = performance.now();
  let problemJson = 0;
  const codes: Record<string, number> = {};
  const onResponse = (status: number, body: string, _context: object, headers: Record<string, string | string[] | undefined> | undefined): void => {
    if (status >= 200 && status < 300) return;
    if (!header(headers, 'content-type').startsWith('application/problem+json')) return;
    problemJson += 1;
    let code = 'unparsable';
    try {
      code = String((JSON.parse(body) as { code?: unknown }).code);
    } catch {
      // counted as unparsable
    }
    codes[code] = (codes[code] ?? 0) + 1;
  };
  const result = await new Promise<autocannon.Result>((resolveLoad, rejectLoad) => {
    const instance = autocannon(
      {
        url: `${url}/1k`,
        connections: settings.connections,
        duration: seconds,
        pipelining: 1,
        maxOverallRequests: MAX_RPS * seconds,
        ...(contract ? { requests: [{ method: 'GET', path: '/1k', onResponse }] } : {}),
      },
      (error: unknown, done: autocannon.Result) => {
        clearTimeout(watchdog);
        clearInterval(poll);
        if (error) rejectLoad(error instanceof Error ? error : new Error('autocannon failed'));
        else resolveLoad(done);
      },
    );
    const watchdog = setTimeout(() => instance.stop(), (seconds + 20) * 1000);
    let polling = false;
    const poll = setInterval(() => {
      if (stopWhen === undefined || polling) return;
      polling = true;
      void stopWhen()
        .then((stop) => {
          if (stop) instance.stop();
        })
        .finally(() => {
          polling = false;
        });
    }, 100);
  });
  const statuses = Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([status, stat]) => [status, stat.count ?? 0]));
  const requests = result.requests.total + result.errors;
  if (requests >= MAX_RPS * seconds) notes.push(`${url}: reached the request cap of ${MAX_RPS * seconds}; its req/s are a floor.`);
  return {
    seconds: (performance.now() - startedAt) / 1000,
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    requests,
    non2xx: result.non2xx,
    errors: result.errors,
    statuses,
    problemJson: contract ? problemJson : null,
    codes: contract ? codes : null,
  };
}

interface ScenarioSpec {
  readonly id: FaultScenarioId;
  readonly title: string;
  readonly modes: readonly ReplicaMode[];
  readonly seconds: number;
  /** Contender ids, in the order of the tables. */
  readonly contenders: readonly string[];
  /** Check the error contract on every response. */
  readonly contract: boolean;
}

function scenarios(balanceIds: readonly string[]): ScenarioSpec[] {
  const common = ['rp', 'nginx', 'hpm'];
  const { seconds } = settings;
  const flap = `${settings.flapMs / 1000} s`;
  return [
    { id: 'S1', title: 'all healthy', modes: ['ok', 'ok', 'ok'], seconds, contenders: ['rp', 'rp-single', 'nginx', 'hpm'], contract: false },
    { id: 'S2', title: 'one replica refusing connections (its port closed)', modes: ['ok', 'ok', 'refuse'], seconds, contenders: common, contract: false },
    { id: 'S3', title: 'one replica answering 503', modes: ['ok', 'ok', '503'], seconds, contenders: common, contract: false },
    { id: 'S4', title: `one replica ${SLOW_MS} ms slower`, modes: ['ok', 'ok', 'slow'], seconds, contenders: ['rp', ...balanceIds, 'nginx', 'hpm'], contract: false },
    { id: 'S5', title: `one replica flapping: ${flap} up, ${flap} down (refusing)`, modes: ['ok', 'ok', 'flap'], seconds: settings.flapSeconds, contenders: common, contract: false },
    { id: 'S6', title: 'every replica down (refusing)', modes: ['refuse', 'refuse', 'refuse'], seconds, contenders: common, contract: true },
    {
      id: 'S7',
      title: `one replica killed ${settings.killAtMs / 1000} s into the run, restarted on the same port ${settings.downMs / 1000} s later`,
      modes: ['ok', 'ok', 'restart'],
      seconds: settings.restartCapSeconds,
      contenders: ['rp', 'rp-round-robin', 'nginx', 'hpm'],
      contract: false,
    },
  ];
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] ?? Number.NaN) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
};
const spread = (values: readonly number[]): Spread => ({ median: median(values), min: Math.min(...values), max: Math.max(...values) });
const sum = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0);
function merge(maps: readonly (Readonly<Record<string, number>> | null)[]): Record<string, number> {
  const merged: Record<string, number> = {};
  for (const map of maps) for (const [key, value] of Object.entries(map ?? {})) merged[key] = (merged[key] ?? 0) + value;
  return merged;
}

/** S7's per-round figures, when the runs have them. */
function recoveryRow(runs: readonly Sample[]): { recovery?: Recovery } {
  const figures = runs.flatMap((s) => (s.recovery === null ? [] : [s.recovery]));
  if (figures.length === 0) return {};
  return {
    recovery: {
      outMs: figures.map((f) => f.outMs),
      lastAttemptMs: figures.map((f) => f.lastAttemptMs),
      attemptsWhileDown: figures.map((f) => f.attemptsWhileDown),
      firstRequestMs: figures.map((f) => f.firstRequestMs),
      runSeconds: figures.map((f) => f.runSeconds),
    },
  };
}


/** Busy CPU ticks of the whole machine, and of this process with its reaped children. */
function cpuTicks(): { machine: number; ours: number } | null {
  try {
    const fields = (/^cpu\s+(.*)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1] ?? '').trim().split(/\s+/).map(Number);
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
    const self = readFileSync('/proc/self/stat', 'utf8');
    const after = self.slice(self.lastIndexOf(')') + 2).split(' ').map(Number);
    // Fields 14–17 of /proc/<pid>/stat (utime, stime, cutime, cstime) are at 11–14 after the state.
    const ours = (after[11] ?? 0) + (after[12] ?? 0) + (after[13] ?? 0) + (after[14] ?? 0);
    return { machine: user + nice + system + irq + softirq + steal, ours };
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  if (!existsSync(join(root, 'dist/index.js'))) throw new Error('Build first: npm run build (npm run bench:faults does).');
  const started = performance.now();
  const loadBefore = loadavg()[0] ?? 0;
  const ticksBefore = cpuTicks();

  const replicas = Child.start('replicas', null, 'replicas');
  const replicaPorts = (await replicas.ready).ports ?? [];
  const targets = replicaPorts.map((port) => `http://127.0.0.1:${port}`);
  const syns = await SynCounter.start(replicaPorts);
  if (typeof syns === 'string') notes.push(`Connection attempts were not counted: ${syns}. Upstream load in S6 counts requests reaching replicas only.`);
  const counter = typeof syns === 'string' ? null : syns;

  // The defaults first: they say which balance mode is the default.
  const defaults = await nodeContender('rp', 'resilient-proxy, group, defaults', 'rp', { targets }, null);
  const defaultBalance = defaults.first.defaultBalance as Balance | undefined;
  if (defaultBalance === undefined || !BALANCES.includes(defaultBalance)) throw new Error('dist/ predates upstream groups (no DEFAULTS.balance): npm run build first.');
  const all: Contender[] = [{ ...defaults.contender, label: `resilient-proxy, group, defaults (${defaultBalance})`, balance: defaultBalance }];
  all.push((await nodeContender('rp-single', 'resilient-proxy, single target (replica 1)', 'rp', { targets, single: true }, null)).contender);
  const balanceIds: string[] = [];
  for (const balance of BALANCES) {
    if (balance === defaultBalance) continue;
    balanceIds.push(`rp-${balance}`);
    all.push((await nodeContender(`rp-${balance}`, `resilient-proxy, group, balance: '${balance}'`, 'rp', { targets, balance }, balance)).contender);
  }
  const version = nginxVersion();
  if (version === null) notes.push('nginx: not installed, skipped (apt-get install nginx to include it).');
  else all.push(nginxContender(version, replicaPorts));
  all.push((await nodeContender('hpm', 'http-proxy-middleware 3, Express, round-robin router', 'hpm', { targets }, null)).contender);

  const fastify = await fastifyHttpProxyTakesAList();
  notes.push(
    fastify === 'accepted'
      ? '@fastify/http-proxy accepted a list of upstreams, but is not measured here yet.'
      : `@fastify/http-proxy 11 takes one upstream: its README and types say \`upstream: string\`, and a list is ${fastify}. It is left out of every scenario (all have three replicas). The @fastify/reply-from under it does take \`base: [...]\` (an undici BalancedPool); that is not measured here.`,
  );

  const specs = scenarios(balanceIds).map((spec) => ({ ...spec, contenders: spec.contenders.filter((id) => all.some((c) => c.id === id)) }));
  const byId = new Map(all.map((c) => [c.id, c]));

  const setModes = async (modes: readonly ReplicaMode[]): Promise<void> => {
    await replicas.request({ cmd: 'set', modes, flapMs: settings.flapMs, slowMs: SLOW_MS, killAtMs: settings.killAtMs, downMs: settings.downMs });
  };
  const restartOf = async (): Promise<Restart | null> => (await replicas.request({ cmd: 'counts' })).restarts?.[2] ?? null;
  // S7 ends a run this long after the restarted replica's first request.
  const servedAgain = async (): Promise<boolean> => {
    const first = (await restartOf())?.firstAfterRestart ?? null;
    return first !== null && Date.now() - first >= settings.afterFirstMs;
  };
  /** S7's figures for one run, read after it. */
  const recoveryOf = async (contender: Contender, seconds: number): Promise<NonNullable<Sample['recovery']>> => {
    const story = await restartOf();
    const killedAt = story?.killedAt ?? null;
    const restartedAt = story?.restartedAt ?? null;
    const port = replicaPorts[2] ?? 0;
    const attempts = counter === null || killedAt === null ? null : counter.between(port, killedAt, restartedAt ?? Number.POSITIVE_INFINITY);
    const url = `http://127.0.0.1:${port}`;
    const out = (await contender.events?.())?.find((event) => event.host.startsWith(url) && (event.to === 'ejected' || event.to === 'failing') && event.at >= (killedAt ?? 0));
    return {
      outMs: out === undefined || killedAt === null ? null : out.at - killedAt,
      lastAttemptMs: attempts === null || attempts.length === 0 || killedAt === null ? null : Math.round((attempts.at(-1) ?? killedAt) - killedAt),
      attemptsWhileDown: attempts?.length ?? null,
      firstRequestMs: story === null || story.firstAfterRestart === null || restartedAt === null ? null : story.firstAfterRestart - restartedAt,
      runSeconds: Math.round(seconds * 10) / 10,
    };
  };
  const snapshot = async (): Promise<{ replicas: number[]; connects: number[] | null }> => {
    await counter?.fence();
    const counts = (await replicas.request({ cmd: 'counts' })).counts ?? [];
    return { replicas: [...counts], connects: counter?.counts(replicaPorts) ?? null };
  };

  // Warm every contender (JIT, not state: each run starts from a fresh proxy). Not measured.
  if (settings.warmSeconds > 0) {
    await setModes(['ok', 'ok', 'ok']);
    for (const contender of all) await load(await contender.reset(), settings.warmSeconds, false);
  }

  const samples = new Map<string, Sample[]>();
  for (let round = 0; round < settings.rounds; round += 1) {
    for (const spec of specs) {
      // Rotate the order each round: A B C …, B C … A, …
      const order = spec.contenders.map((_, i) => spec.contenders[(i + round) % spec.contenders.length] ?? '');
      for (const id of order) {
        const contender = byId.get(id);
        if (contender === undefined) continue;
        const url = await contender.reset();
        await setModes(spec.modes);
        const before = await snapshot();
        const restarting = spec.modes.includes('restart');
        const { seconds: ran, ...measured } = await load(url, spec.seconds, spec.contract, restarting ? servedAgain : undefined);
        const after = await snapshot();
        const sample: Sample = {
          ...measured,
          replicas: after.replicas.map((n, i) => n - (before.replicas[i] ?? 0)),
          connects: after.connects === null ? null : after.connects.map((n, i) => n - (before.connects?.[i] ?? 0)),
          recovery: restarting ? await recoveryOf(contender, ran) : null,
        };
        const key = `${spec.id}:${id}`;
        samples.set(key, [...(samples.get(key) ?? []), sample]);
        process.stdout.write(`${spec.id} round ${round + 1} ${contender.label}: ${Math.round(sample.rps)} req/s, ${sample.non2xx} non-2xx, ${sample.errors} errors\n`);
      }
    }
  }
  await setModes(['ok', 'ok', 'ok']);

  const results: FaultScenario[] = specs.map((spec) => ({
    id: spec.id,
    title: spec.title,
    seconds: spec.seconds,
    ...(spec.modes.includes('restart') ? { killAtMs: settings.killAtMs, downMs: settings.downMs } : {}),
    modes: spec.modes,
    rows: spec.contenders.flatMap((id): FaultRow[] => {
      const contender = byId.get(id);
      const runs = samples.get(`${spec.id}:${id}`) ?? [];
      if (contender === undefined || runs.length === 0) return [];
      return [
        {
          id,
          label: contender.label,
          balance: contender.balance,
          rounds: runs.length,
          requests: sum(runs.map((s) => s.requests)),
          non2xx: sum(runs.map((s) => s.non2xx)),
          errors: sum(runs.map((s) => s.errors)),
          statuses: merge(runs.map((s) => s.statuses)),
          rps: spread(runs.map((s) => s.rps)),
          p50: median(runs.map((s) => s.p50)),
          p99: spread(runs.map((s) => s.p99)),
          replicas: [0, 1, 2].map((i) => sum(runs.map((s) => s.replicas[i] ?? 0))),
          connects: runs.some((s) => s.connects === null) ? null : [0, 1, 2].map((i) => sum(runs.map((s) => s.connects?.[i] ?? 0))),
          problemJson: spec.contract ? sum(runs.map((s) => s.problemJson ?? 0)) : null,
          codes: spec.contract ? merge(runs.map((s) => s.codes)) : null,
          ...recoveryRow(runs),
        },
      ];
    }),
  }));

  // The machinery, not the figures: every contender must have served in S1.
  for (const row of results.find((s) => s.id === 'S1')?.rows ?? []) {
    const ok = row.statuses['200'] ?? 0;
    if (ok === 0) throw new Error(`S1: ${row.label} served no 200 at all; the benchmark is broken (statuses ${JSON.stringify(row.statuses)}, ${row.errors} errors).`);
  }

  stopping = true;
  for (const contender of all) await contender.stop();
  await replicas.stop();
  const dropped = (await counter?.stop()) ?? 0;
  if (dropped > 0) notes.push(`tcpdump: ${dropped} packets dropped by the kernel; connection counts may be short.`);
  const ticksAfter = cpuTicks();
  const loadAfter = loadavg()[0] ?? 0;
  let otherCpu: number | null = null;
  if (ticksBefore !== null && ticksAfter !== null) {
    const seconds = (performance.now() - started) / 1000;
    const capacity = seconds * 100 * cpus().length; // USER_HZ is 100 on Linux
    otherCpu = Math.max(0, Math.min(1, (ticksAfter.machine - ticksBefore.machine - (ticksAfter.ours - ticksBefore.ours)) / capacity));
  }

  const date = new Date().toISOString();
  const measured = measuredCommit();
  const output: FaultResults = {
    schema: 1,
    run: {
      description: smoke
        ? `A smoke run of bench/faults.ts on ${date.slice(0, 10)}: about a second of every scenario, to prove the benchmark works.`
        : `A full run of \`npm run bench:faults\` on ${date.slice(0, 10)}${measured === null ? '' : `, on commit ${measured}`}.`,
      date,
      commit: measured,
      node: process.version,
      machine: `${cpus().length} cores, ${Math.round(totalmem() / 1024 ** 3)} GiB, ${type()}`,
      smoke,
      rounds: settings.rounds,
      connections: settings.connections,
      flapMs: settings.flapMs,
      slowMs: SLOW_MS,
      defaultBalance,
      nginx: version,
      connectsCounted: counter !== null,
      load: [Number(loadBefore.toFixed(2)), Number(loadAfter.toFixed(2))],
      otherCpu: otherCpu === null ? null : Number(otherCpu.toFixed(3)),
      totalSeconds: Math.round((performance.now() - started) / 1000),
      notes,
    },
    scenarios: results,
  };
  writeFaultResults(output, outFile);

  console.log();
  console.log(faultsBlock(output));
  console.log();
  const shown = relative(process.cwd(), outFile);
  console.log(`Total time ${output.run.totalSeconds ?? 0} s. Results written to ${shown.startsWith('..') ? outFile : shown}.`);
  if (!smoke && outFile === FAULTS) console.log('Run `npm run bench:docs` to put these figures into BENCHMARKS.md.');
}

try {
  await main();
} finally {
  stopping = true;
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

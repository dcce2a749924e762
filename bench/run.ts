// `npm run bench`: resilient-proxy against the bare engine and the usual
// alternatives, side by side in one run on loopback. Every contender runs in
// its own process against one upstream process; load comes from autocannon
// in this process, keep-alive, fixed concurrency, in interleaved rounds so
// drift hits every contender alike. Writes its results to
// bench/results/latest.json (`npm run bench:docs` renders README.md's and
// BENCHMARKS.md's figures from that file) and prints the tables.
// `--smoke` runs a few seconds of everything, to prove the benchmark works;
// its results go to a temporary file, never to latest.json.
// `--out FILE` writes the results elsewhere.

import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { createServer, connect, type AddressInfo } from 'node:net';
import { cpus, tmpdir, totalmem, type } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { benchmarksBlock } from './sections/throughput.js';
import { nginxVersion, startNginxIn } from './nginx.js';
import { asEarlier, LATEST, measuredCommit, readResults, writeResults, type BenchResults, type ContenderId, type MemoryRow, type RefusalMeasure, type ThroughputTable } from './results.js';
import type { Kind } from './servers.js';
import { writeBytes } from './write-bytes.js';

const smoke = process.argv.includes('--smoke');
const settings = smoke
  ? { rounds: 1, seconds: 1, connections: 10, sizes: ['1k'], streamBytes: 16 * 1024 * 1024, refusals: 200, outage: 200 }
  : { rounds: 5, seconds: 4, connections: 50, sizes: ['1k', '1m'], streamBytes: 1024 * 1024 * 1024, refusals: 5000, outage: 2000 };

const outIndex = process.argv.indexOf('--out');
const outFile =
  outIndex !== -1 ? resolve(process.argv[outIndex + 1] ?? '') : smoke ? join(tmpdir(), 'resilient-proxy-bench-smoke.json') : LATEST;
const SIZE_BYTES: Record<string, number> = { '1k': 1024, '1m': 1024 * 1024 };

const root = fileURLToPath(new URL('..', import.meta.url));
// Children import resilient-proxy by name: without the tsconfig `paths` that
// point the name at src/, Node resolves it to the build in dist/.
const childEnv = { ...process.env, TSX_TSCONFIG_PATH: join(root, 'bench/tsconfig.runtime.json') };

interface Contender {
  readonly id: ContenderId;
  readonly label: string;
  readonly url: string;
  readonly pid: number | null;
  stop(): Promise<void>;
}

const children: ChildProcess[] = [];

async function server(kind: Kind, target = ''): Promise<{ url: string; pid: number; stop: () => Promise<void> }> {
  const child = fork(join(root, 'bench/servers.ts'), [kind, target], { execArgv: ['--import', 'tsx'], env: childEnv, stdio: 'inherit' });
  children.push(child);
  const [message] = (await once(child, 'message')) as [{ port: number; library: string }];
  if (kind !== 'upstream' && !message.library.includes('/dist/')) throw new Error(`${kind} loaded resilient-proxy from ${message.library}, not from dist/`);
  return {
    url: `http://127.0.0.1:${message.port}`,
    pid: child.pid ?? 0,
    stop: async () => {
      child.kill();
      if (child.exitCode === null) await once(child, 'exit');
    },
  };
}

async function freePort(): Promise<number> {
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as AddressInfo;
  probe.close();
  await once(probe, 'close');
  return port;
}

async function waitForPort(port: number): Promise<void> {
  for (let tries = 0; tries < 100; tries += 1) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await delay(50);
  }
  throw new Error(`nothing listens on ${port}`);
}

/** nginx as a reverse proxy, one worker, keep-alive upstream, no buffering: when it is installed. */
async function nginx(upstreamUrl: string): Promise<Contender | null> {
  if (nginxVersion() === null) return null;
  const dir = mkdtempSync(join(tmpdir(), 'rp-bench-nginx-'));
  const port = await freePort();
  const upstreamPort = Number(new URL(upstreamUrl).port);
  // No body size limit and no buffering either way: the upload and 1 MiB rows stream, as the Node contenders do.
  const child = startNginxIn(dir, port, [upstreamPort], ['client_max_body_size 0;', 'proxy_buffering off;', 'proxy_request_buffering off;'], 64);
  children.push(child);
  await waitForPort(port);
  return {
    id: 'nginx',
    label: 'nginx 1 worker (reference)',
    url: `http://127.0.0.1:${port}`,
    pid: null,
    stop: async () => {
      child.kill('SIGQUIT');
      if (child.exitCode === null) await once(child, 'exit');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

interface Sample {
  rps: number;
  p50: number;
  p99: number;
}

async function load(url: string, seconds: number, label = url): Promise<Sample> {
  const result = await autocannon({ url, connections: settings.connections, duration: seconds, pipelining: 1 });
  if (result.errors > 0 || result.non2xx > 0 || result.timeouts > 0) {
    throw new Error(`${label} (${url}): ${result.errors} errors, ${result.non2xx} non-2xx, ${result.timeouts} timeouts; codes ${JSON.stringify(result.statusCodeStats)}`);
  }
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99 };
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] ?? Number.NaN) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
};
const spread = (values: number[]) => ({ median: median(values), min: Math.min(...values), max: Math.max(...values) });


function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  return kib / 1024;
}

/** Streams `bytes` down and then up through `url` while sampling the process's RSS; returns the growth over its RSS before. */
async function streamingRss(url: string, pid: number, bytes: number): Promise<{ download: number; upload: number }> {
  const sampleWhile = async (work: Promise<unknown>): Promise<number> => {
    const before = rssMiB(pid);
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(pid))), 10);
    await work;
    clearInterval(sampler);
    return Math.max(0, Math.max(peak, rssMiB(pid)) - before);
  };
  const download = await sampleWhile(
    new Promise<void>((resolve, reject) => {
      request(`${url}/download/${bytes}`, (res) => {
        let received = 0;
        res.on('data', (chunk: Buffer) => (received += chunk.length));
        res.once('end', () => (received === bytes ? resolve() : reject(new Error(`downloaded ${received} of ${bytes}`))));
      })
        .once('error', reject)
        .end();
    }),
  );
  const upload = await sampleWhile(
    new Promise<void>((resolve, reject) => {
      const req = request(`${url}/sink`, { method: 'POST', headers: { 'content-length': bytes } }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (data: string) => (text += data));
        res.once('end', () => (Number(text) === bytes ? resolve() : reject(new Error(`uploaded ${text} of ${bytes}`))));
      });
      req.once('error', reject);
      writeBytes(req, bytes);
    }),
  );
  return { download, upload };
}

/** Runs a bench script in a child (so it measures dist/) and returns its JSON line. */
function script(file: string, args: string[]): unknown {
  const output = execFileSync(process.execPath, ['--import', 'tsx', join(root, file), ...args, '--json'], { env: childEnv, encoding: 'utf8' });
  return JSON.parse(output.trim().split('\n').pop() ?? '{}');
}

async function main(): Promise<void> {
  if (!existsSync(join(root, 'dist/index.js'))) throw new Error('Build first: npm run build (npm run bench does).');
  const started = performance.now();
  const upstream = await server('upstream');
  const contenders: Contender[] = [{ id: 'a', label: '(a) upstream called directly', url: upstream.url, pid: null, stop: () => Promise.resolve() }];
  const kinds: [ContenderId, string, Kind][] = [
    ['b', '(b) bare undici proxy (Pool.stream)', 'bare-undici'],
    ['c', '(c) resilient-proxy, node:http', 'rp-node'],
    ['d', '(d) resilient-proxy, Express, all on', 'rp-express'],
    ['b2', '(b′) bare undici proxy inside Express (diagnostic)', 'bare-undici-express'],
    ['e', '(e) http-proxy-middleware, Express', 'hpm-express'],
    ['f', '(f) resilient-proxy, Fastify adapter', 'rp-fastify'],
    ['g', '(g) @fastify/http-proxy', 'fastify-http-proxy'],
  ];
  for (const [id, label, kind] of kinds) contenders.push({ id, label, ...(await server(kind, upstream.url)) });
  const reference = await nginx(upstream.url);
  if (reference !== null) contenders.push(reference);

  // Warm every path (JIT, keep-alive pools) before measuring. Warm-up is not
  // measured: a socket error here is reported, not fatal. Measured rounds
  // must be clean. A smoke run, whose figures mean nothing, skips it.
  const notes: string[] = [];

  for (const size of smoke ? [] : settings.sizes) {
    for (const contender of contenders) {
      await load(`${contender.url}/${size}`, 1, contender.label).catch((error: unknown) => {
        notes.push(`warm-up: ${String(error)}`);
      });
    }
  }

  const samples = new Map<string, Sample[]>();
  for (const size of settings.sizes) {
    for (let round = 0; round < settings.rounds; round += 1) {
      // Rotate the order each round: A B C …, B C … A, …
      const order = contenders.map((_, i) => contenders[(i + round) % contenders.length] as Contender);
      for (const contender of order) {
        const key = `${size}:${contender.id}`;
        const measured = load(`${contender.url}/${size}`, settings.seconds, contender.label);
        // A smoke run only proves the benchmark works: it reports socket errors
        // instead of failing on them. A full run must be clean.
        const sample = smoke
          ? await measured.catch((error: unknown) => {
              notes.push(`smoke: ${String(error)}`);
              return { rps: 0, p50: 0, p99: 0 };
            })
          : await measured;
        samples.set(key, [...(samples.get(key) ?? []), sample]);
      }
    }
  }

  const throughput: ThroughputTable[] = settings.sizes.map((size) => ({
    size,
    bytes: SIZE_BYTES[size] ?? 0,
    rows: contenders.map((contender) => {
      const runs = samples.get(`${size}:${contender.id}`) ?? [];
      return {
        id: contender.id,
        label: contender.label,
        rps: spread(runs.map((s) => s.rps)),
        p50: median(runs.map((s) => s.p50)),
        p99: spread(runs.map((s) => s.p99)),
      };
    }),
  }));

  const memory: MemoryRow[] = [];
  for (const contender of contenders) {
    if (contender.pid === null) continue;
    const growth = await streamingRss(contender.url, contender.pid, settings.streamBytes);
    memory.push({ id: contender.id, label: contender.label, download: Number(growth.download.toFixed(1)), upload: Number(growth.upload.toFixed(1)) });
  }

  for (const contender of contenders) await contender.stop();
  await upstream.stop();

  const refusal = script('bench/breaker-refusal.ts', [String(settings.refusals)]) as {
    count: number;
    rounds: number;
    summary: { measure: RefusalMeasure; refusedMicros: number; openMicros: number }[];
  };
  const amplification = script('bench/retry-amplification.ts', [String(settings.outage), '50']) as {
    total: number;
    concurrency: number;
    retries: number;
    results: { label: string; hits: number }[];
  };

  const date = new Date().toISOString();
  const measured = measuredCommit();
  const previous = !smoke && outFile === LATEST && existsSync(LATEST) ? readResults(LATEST) : null;
  const results: BenchResults = {
    schema: 1,
    run: {
      description: smoke
        ? `A smoke run of bench/run.ts on ${date.slice(0, 10)}: a few seconds of every measurement, to prove the benchmark works.`
        : `A full run of \`npm run bench\` on ${date.slice(0, 10)}${measured === null ? '' : `, on commit ${measured}`}.`,
      date,
      commit: measured,
      node: process.version,
      machine: `${cpus().length} cores, ${Math.round(totalmem() / 1024 ** 3)} GiB, ${type()}`,
      smoke,
      rounds: settings.rounds,
      seconds: settings.seconds,
      connections: settings.connections,
      nginx: reference !== null,
      totalSeconds: Math.round((performance.now() - started) / 1000),
      notes,
    },
    throughput,
    memory: { bytes: settings.streamBytes, rows: memory },
    refusal: {
      requests: refusal.count,
      rounds: refusal.rounds,
      rows: refusal.summary.map(({ measure, refusedMicros, openMicros }) => ({ measure, refusedMicros, openMicros })),
    },
    amplification: {
      clientRequests: amplification.total,
      concurrency: amplification.concurrency,
      retries: amplification.retries,
      rows: amplification.results.map(({ label, hits }) => ({ label, hits })),
    },
    // The two full runs before this one, to show how much figures move.
    earlier: previous === null ? [] : [asEarlier(previous), ...previous.earlier].slice(0, 2),
  };
  writeResults(results, outFile);

  console.log(benchmarksBlock(results));
  console.log();
  for (const note of notes) console.log(note);
  if (reference === null) console.log('nginx: not installed, skipped (apt-get install nginx-light to include it).');
  const shown = relative(process.cwd(), outFile);
  console.log(`Total time ${results.run.totalSeconds ?? 0} s. Results written to ${shown.startsWith('..') ? outFile : shown}.`);
  if (!smoke && outFile === LATEST) console.log('Run `npm run bench:docs` to put these figures into README.md and BENCHMARKS.md.');
}

try {
  await main();
} finally {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
}

// The real engines the fleet tests and bench/fleet.ts run against: a dnsmasq
// and a redis-server of the caller's own, on free loopback ports, stopped by
// `close()` (test/engines.ts closes them after each test). A missing binary
// fails with the command that installs it (CI runs it in .ci/run): the tests
// never skip.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const INSTALL = 'apt-get update && apt-get install -y dnsmasq redis-server';

function requireBinary(name: string): void {
  const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  if (found.status !== 0) throw new Error(`These tests run a real ${name}, and it is not installed: ${INSTALL} (CI does this in .ci/run).`);
}

/** A port free for both TCP and UDP on 127.0.0.1. */
async function freePort(): Promise<number> {
  for (;;) {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    server.close();
    const udp = createSocket('udp4');
    const free = await new Promise<boolean>((resolve) => {
      udp.once('error', () => resolve(false));
      udp.bind(port, '127.0.0.1', () => resolve(true));
    });
    udp.close();
    if (free) return port;
  }
}

/** Resolves when `child` writes a line matching `pattern` on stdout or stderr; rejects if it exits first. */
function waitForOutput(child: ChildProcess, pattern: RegExp, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const onData = (chunk: Buffer): void => {
      seen += chunk.toString();
      if (!pattern.test(seen)) return;
      done();
      resolve();
    };
    const onExit = (code: number | null): void => {
      done();
      reject(new Error(`${what} exited (${code}) before it was ready:\n${seen}`));
    };
    const done = (): void => {
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });
}

/** Engines still running when the test process exits (a cleanup that timed out) are killed with it, never left behind. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

function track(child: ChildProcess): ChildProcess {
  running.add(child);
  child.once('exit', () => running.delete(child));
  return child;
}

async function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  await exited;
}

export interface DnsRecords {
  /** `address name` lines of a hosts file (read again on `reload()`). */
  readonly hosts?: readonly (readonly [address: string, name: string])[];
  /** SRV records: name, target, port, priority, weight (read again on `restart()`). */
  readonly srv?: readonly (readonly [name: string, target: string, port: number, priority: number, weight: number])[];
}

export interface Dnsmasq {
  /** `127.0.0.1:port`, for `target.servers`. */
  readonly server: string;
  /** Writes the hosts file and makes dnsmasq read it again (SIGHUP); resolves once it has. */
  reload(hosts: DnsRecords['hosts']): Promise<void>;
  /** Stops the server (the port goes quiet). */
  stop(): Promise<void>;
  /** Starts it again on the same port, with `records` (SRV records are only read at start). */
  restart(records?: DnsRecords): Promise<void>;
  /** Stops the server for good and removes its files. */
  close(): Promise<void>;
}

/**
 * A dnsmasq authoritative for `.test` (unknown names are NXDOMAIN), asking no
 * other server and reading no system file. Records have TTL `ttl` seconds.
 */
export async function startDnsmasq(records: DnsRecords, ttl = 0): Promise<Dnsmasq> {
  requireBinary('dnsmasq');
  const dir = mkdtempSync(join(tmpdir(), 'rp-dnsmasq-'));
  const hostsFile = join(dir, 'hosts');
  const confFile = join(dir, 'dnsmasq.conf');
  const port = await freePort();
  let child: ChildProcess | null = null;
  const write = (next: DnsRecords): void => {
    writeFileSync(hostsFile, (next.hosts ?? []).map(([address, name]) => `${address} ${name}\n`).join(''));
    writeFileSync(confFile, (next.srv ?? []).map(([name, target, srvPort, priority, weight]) => `srv-host=${name},${target},${srvPort},${priority},${weight}\n`).join(''));
  };
  const start = async (): Promise<void> => {
    const started = track(spawn(
      'dnsmasq',
      [
        '--keep-in-foreground',
        '--log-facility=-',
        `--port=${port}`,
        '--listen-address=127.0.0.1',
        '--bind-interfaces',
        '--no-resolv',
        '--no-hosts',
        '--no-poll',
        '--pid-file=',
        '--user=root',
        '--local=/test/',
        `--local-ttl=${ttl}`,
        `--addn-hosts=${hostsFile}`,
        `--conf-file=${confFile}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    ));
    child = started;
    await waitForOutput(started, /read .*hosts/, 'dnsmasq');
  };
  write(records);
  await start();
  return {
    server: `127.0.0.1:${port}`,
    async reload(hosts) {
      write({ hosts: hosts ?? [], srv: [] });
      const running = child as ChildProcess;
      const read = waitForOutput(running, new RegExp(`read ${hostsFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`), 'dnsmasq');
      running.kill('SIGHUP');
      await read;
    },
    async stop() {
      if (child !== null) await stop(child);
    },
    async restart(next) {
      if (child !== null) await stop(child);
      if (next !== undefined) write(next);
      await start();
    },
    async close() {
      if (child !== null) await stop(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RedisServer {
  readonly port: number;
  /** Kills the server at once (SIGKILL): clients see the connection drop. */
  kill(): Promise<void>;
  /** Starts it again on the same port, empty. */
  restart(): Promise<void>;
  /** Freezes the server (SIGSTOP): connections stay open, nothing is answered, as with a Redis stuck on a slow command. */
  pause(): void;
  /** Lets it run again (SIGCONT). */
  resume(): void;
  /** Stops the server for good. */
  close(): Promise<void>;
}

/** A redis-server on 127.0.0.1 that keeps nothing on disk, bounded to `maxmemory` bytes with volatile-lru eviction. */
export async function startRedis(maxmemory = 64 * 1024 * 1024): Promise<RedisServer> {
  requireBinary('redis-server');
  const port = await freePort();
  let child: ChildProcess | null = null;
  const start = async (): Promise<void> => {
    const started = track(spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxmemory', String(maxmemory), '--maxmemory-policy', 'volatile-lru', '--loglevel', 'notice'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    ));
    child = started;
    await waitForOutput(started, /Ready to accept connections/, 'redis-server');
  };
  await start();
  return {
    port,
    pause() {
      child?.kill('SIGSTOP');
    },
    resume() {
      child?.kill('SIGCONT');
    },
    async kill() {
      if (child !== null) await stop(child, 'SIGKILL');
    },
    async restart() {
      await start();
    },
    async close() {
      if (child === null) return;
      child.kill('SIGCONT');
      await stop(child);
    },
  };
}

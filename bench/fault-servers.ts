// The processes of the fault benchmark (`bench/faults.ts`), each started by
// the runner as `tsx bench/fault-servers.ts <kind> <json>` and driven over IPC:
//
// - `replicas`: three upstream replicas, one port each, in one process. Each
//   counts the requests it receives and takes a mode per run: `ok`, `refuse`
//   (its port closed, its connections cut), `503`, `slow` (every response
//   300 ms late), `flap` (up and down, refusing, in turns) or `restart` (up,
//   killed after a while, restarted on the same port after a while more; it
//   says when, and when the first request after the restart came).
// - `rp`: resilient-proxy on bare node:http, a group of the replicas (or one
//   of them), with its defaults and, optionally, one `balance` mode. It
//   records the group's host state changes (`events`).
// - `hpm`: http-proxy-middleware 3 on Express 5 with the round-robin `router`
//   a user would write.
//
// A proxy process answers `reset` with a fresh proxy on a new port: no state
// (ejections, breaker, latency estimates, pooled connections) carries over
// from one measured run to the next. resilient-proxy is imported by name,
// which resolves to the build in dist/ (see faults.ts).

import { once } from 'node:events';
import { Agent as HttpAgent, createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { createProxyMiddleware } from 'http-proxy-middleware';
import { createProxy, DEFAULTS, type ProxyOptions } from 'resilient-proxy';

export type ReplicaMode = 'ok' | 'refuse' | '503' | 'slow' | 'flap' | 'restart';
export type FaultKind = 'replicas' | 'rp' | 'hpm';

/** What the runner sends. */
export type Command =
  | {
      readonly id: number;
      readonly cmd: 'set';
      readonly modes: readonly ReplicaMode[];
      readonly flapMs: number;
      readonly slowMs: number;
      /** `restart`: killed this long after the command, for `downMs`. */
      readonly killAtMs?: number;
      readonly downMs?: number;
    }
  | { readonly id: number; readonly cmd: 'counts' }
  | { readonly id: number; readonly cmd: 'reset' }
  | { readonly id: number; readonly cmd: 'events' };

/** A `restart` replica's story, in ms since the epoch (`null`: not yet). */
export interface Restart {
  readonly killedAt: number | null;
  readonly restartedAt: number | null;
  /** The first request it received after its restart. */
  readonly firstAfterRestart: number | null;
}

/** A host state change of resilient-proxy's group, with when (ms since the epoch). */
export interface HostEvent {
  readonly host: string;
  readonly to: string;
  readonly reason: string;
  readonly at: number;
}

/** What a process answers: to its start (id 0) and to each command. */
export interface Reply {
  readonly id: number;
  readonly ports?: readonly number[];
  readonly counts?: readonly number[];
  /** With `counts`: each replica's restart story (`null` when not in `restart` mode). */
  readonly restarts?: readonly (Restart | null)[];
  readonly events?: readonly HostEvent[];
  readonly library?: string;
  readonly defaultBalance?: string;
}

export interface ProxyConfig {
  readonly targets: readonly string[];
  /** Proxy to the first target only (resilient-proxy). */
  readonly single?: boolean;
  /** A `balance` mode; none for the default. */
  readonly balance?: NonNullable<ProxyOptions['balance']>;
}

const BODY = Buffer.alloc(1024, 'k');
/** A safety bound: a flapping replica stops flapping (and stays up) after this long without a new command. */
const FLAP_LIMIT_MS = 120_000;

function reply(message: Reply): void {
  process.send?.(message);
}

async function listen(server: Server, port = 0): Promise<number> {
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

async function closeServer(server: Server): Promise<void> {
  if (!server.listening) return;
  const closed = once(server, 'close');
  server.close();
  server.closeAllConnections();
  await closed;
}

class Replica {
  requests = 0;
  mode: ReplicaMode = 'ok';
  slowMs = 300;
  port = 0;
  #flap: NodeJS.Timeout | null = null;
  #flapUntil: NodeJS.Timeout | null = null;
  #restartTimers: NodeJS.Timeout[] = [];
  restart: { killedAt: number | null; restartedAt: number | null; firstAfterRestart: number | null } | null = null;
  /** Serialises up/down changes. */
  #change: Promise<void> = Promise.resolve();
  readonly server: Server;

  constructor() {
    this.server = createServer(this.#handle);
    this.server.keepAliveTimeout = 60_000;
  }

  readonly #handle: RequestListener = (req, res) => {
    this.requests += 1;
    if (this.restart !== null && this.restart.restartedAt !== null) this.restart.firstAfterRestart ??= Date.now();
    req.resume();
    if (this.mode === '503') {
      res.writeHead(503, { 'content-type': 'text/plain', 'content-length': 11 }).end('unavailable');
      return;
    }
    const send = (): void => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BODY.length }).end(BODY);
    };
    if (this.mode === 'slow') setTimeout(send, this.slowMs);
    else send();
  };

  async start(): Promise<void> {
    this.port = await listen(this.server);
  }

  #up(up: boolean): Promise<void> {
    this.#change = this.#change.then(async () => {
      if (up && !this.server.listening) await listen(this.server, this.port);
      if (!up) await closeServer(this.server);
    });
    return this.#change;
  }

  #stopFlapping(): void {
    if (this.#flap !== null) clearInterval(this.#flap);
    if (this.#flapUntil !== null) clearTimeout(this.#flapUntil);
    for (const timer of this.#restartTimers) clearTimeout(timer);
    this.#flap = null;
    this.#flapUntil = null;
    this.#restartTimers = [];
  }

  async set(mode: ReplicaMode, flapMs: number, slowMs: number, killAtMs = 0, downMs = 0): Promise<void> {
    this.#stopFlapping();
    this.restart = null;
    this.mode = mode;
    this.slowMs = slowMs;
    // Every run starts on fresh connections: whatever the last contender left is cut.
    this.server.closeAllConnections();
    await this.#up(mode !== 'refuse');
    if (mode === 'flap') {
      // Up now, down after flapMs, up again after 2 × flapMs, … (bounded by FLAP_LIMIT_MS).
      let up = true;
      this.#flap = setInterval(() => {
        up = !up;
        void this.#up(up);
      }, flapMs);
      this.#flapUntil = setTimeout(() => {
        this.#stopFlapping();
        void this.#up(true);
      }, FLAP_LIMIT_MS);
    }
    if (mode === 'restart') {
      const story = { killedAt: null as number | null, restartedAt: null as number | null, firstAfterRestart: null as number | null };
      this.restart = story;
      this.#restartTimers.push(
        setTimeout(() => {
          story.killedAt = Date.now();
          void this.#up(false);
        }, killAtMs),
        setTimeout(() => {
          void this.#up(true).then(() => {
            story.restartedAt = Date.now();
          });
        }, killAtMs + downMs),
      );
    }
  }
}

async function replicas(): Promise<void> {
  const all = [new Replica(), new Replica(), new Replica()];
  for (const replica of all) await replica.start();
  process.on('message', (command: Command) => {
    void (async () => {
      if (command.cmd === 'set') {
        await Promise.all(all.map((replica, i) => replica.set(command.modes[i] ?? 'ok', command.flapMs, command.slowMs, command.killAtMs, command.downMs)));
        reply({ id: command.id });
      } else if (command.cmd === 'counts') {
        reply({ id: command.id, counts: all.map((replica) => replica.requests), restarts: all.map((replica) => (replica.restart === null ? null : { ...replica.restart })) });
      }
    })();
  });
  reply({ id: 0, ports: all.map((replica) => replica.port) });
}

interface Running {
  readonly server: Server;
  /** resilient-proxy's host state changes since this proxy started. */
  readonly events: HostEvent[];
  close(): Promise<void>;
}

async function startProxy(kind: 'rp' | 'hpm', config: ProxyConfig): Promise<Running & { port: number }> {
  const { targets } = config;
  if (kind === 'rp') {
    // The defaults, as a user writes them: targets and a name, on bare node:http.
    const events: HostEvent[] = [];
    const proxy = createProxy({
      target: config.single === true ? (targets[0] ?? '') : targets,
      name: config.single === true ? 'faults-single' : 'faults-group',
      ...(config.balance === undefined ? {} : { balance: config.balance }),
      // Observing only: the hook changes nothing the proxy does.
      hooks: { onHostStateChange: ({ host, to, reason }) => events.push({ host, to, reason, at: Date.now() }) },
    });
    const server = createServer(proxy);
    server.keepAliveTimeout = 60_000;
    return { server, events, port: await listen(server), close: () => proxy.close() };
  }
  // http-proxy-middleware has no list of upstreams: the router a user writes,
  // cycling through them. A keep-alive agent, as in bench/run.ts (http-proxy's
  // default opens one upstream connection per request).
  let next = 0;
  const agent = new HttpAgent({ keepAlive: true });
  const app = express();
  app.use(
    '/',
    createProxyMiddleware({
      target: targets[0] ?? '',
      router: () => targets[next++ % targets.length] ?? '',
      agent,
    }),
  );
  const server = createServer(app);
  server.keepAliveTimeout = 60_000;
  return {
    server,
    events: [],
    port: await listen(server),
    close: () => {
      agent.destroy();
      return Promise.resolve();
    },
  };
}

async function proxyProcess(kind: 'rp' | 'hpm', config: ProxyConfig): Promise<void> {
  let running = await startProxy(kind, config);
  const library = import.meta.resolve('resilient-proxy');
  process.on('message', (command: Command) => {
    void (async () => {
      if (command.cmd === 'events') reply({ id: command.id, events: running.events });
      if (command.cmd !== 'reset') return;
      await closeServer(running.server);
      await running.close();
      running = await startProxy(kind, config);
      reply({ id: command.id, ports: [running.port] });
    })();
  });
  reply({ id: 0, ports: [running.port], library, defaultBalance: DEFAULTS.balance });
}

const [kind = '', json = '{}'] = process.argv.slice(2);
if (kind === 'replicas') await replicas();
else if (kind === 'rp' || kind === 'hpm') await proxyProcess(kind, JSON.parse(json) as ProxyConfig);
else throw new TypeError(`unknown fault-bench process ${kind}`);
// The runner ends this process; on its own it exits when the runner goes.
process.once('disconnect', () => process.exit(0));

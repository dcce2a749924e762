// The processes of the fault benchmark (`bench/faults.ts`), each started by
// the runner as `tsx bench/fault-servers.ts <kind> <json>` and driven over IPC:
//
// - `replicas`: three upstream replicas, one port each, in one process. Each
//   counts the requests it receives and takes a mode per run: `ok`, `refuse`
//   (its port closed, its connections cut), `503`, `slow` (every response
//   300 ms late) or `flap` (up and down, refusing, in turns).
// - `rp`: resilient-proxy on bare node:http, a group of the replicas (or one
//   of them), with its defaults and, optionally, one `balance` mode.
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

export type ReplicaMode = 'ok' | 'refuse' | '503' | 'slow' | 'flap';
export type FaultKind = 'replicas' | 'rp' | 'hpm';

/** What the runner sends. */
export type Command =
  | { readonly id: number; readonly cmd: 'set'; readonly modes: readonly ReplicaMode[]; readonly flapMs: number; readonly slowMs: number }
  | { readonly id: number; readonly cmd: 'counts' }
  | { readonly id: number; readonly cmd: 'reset' };

/** What a process answers: to its start (id 0) and to each command. */
export interface Reply {
  readonly id: number;
  readonly ports?: readonly number[];
  readonly counts?: readonly number[];
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
  /** Serialises up/down changes. */
  #change: Promise<void> = Promise.resolve();
  readonly server: Server;

  constructor() {
    this.server = createServer(this.#handle);
    this.server.keepAliveTimeout = 60_000;
  }

  readonly #handle: RequestListener = (req, res) => {
    this.requests += 1;
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
    this.#flap = null;
    this.#flapUntil = null;
  }

  async set(mode: ReplicaMode, flapMs: number, slowMs: number): Promise<void> {
    this.#stopFlapping();
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
  }
}

async function replicas(): Promise<void> {
  const all = [new Replica(), new Replica(), new Replica()];
  for (const replica of all) await replica.start();
  process.on('message', (command: Command) => {
    void (async () => {
      if (command.cmd === 'set') {
        await Promise.all(all.map((replica, i) => replica.set(command.modes[i] ?? 'ok', command.flapMs, command.slowMs)));
        reply({ id: command.id });
      } else if (command.cmd === 'counts') {
        reply({ id: command.id, counts: all.map((replica) => replica.requests) });
      }
    })();
  });
  reply({ id: 0, ports: all.map((replica) => replica.port) });
}

interface Running {
  readonly server: Server;
  close(): Promise<void>;
}

async function startProxy(kind: 'rp' | 'hpm', config: ProxyConfig): Promise<Running & { port: number }> {
  const { targets } = config;
  if (kind === 'rp') {
    // The defaults, as a user writes them: targets and a name, on bare node:http.
    const proxy = createProxy({
      target: config.single === true ? (targets[0] ?? '') : targets,
      name: config.single === true ? 'faults-single' : 'faults-group',
      ...(config.balance === undefined ? {} : { balance: config.balance }),
    });
    const server = createServer(proxy);
    server.keepAliveTimeout = 60_000;
    return { server, port: await listen(server), close: () => proxy.close() };
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

// Drills of issue 18 against a group of three real hosts, in Express, Fastify
// and Koa: hosts the test kills (connections refused) and restarts on the
// same port, hosts answering 503 (with and without Retry-After), and a host
// that answers 300 ms late. Clients send sequential GETs; the test asserts
// what they got, what `registry.get()` shows and which hook events fired.
//
// Everything asserted is counted (requests a host received, events, replies),
// never timed. Where a target is about time (a host serves again "within
// seconds"), traffic is paced and the window is wide: the counts hold at any
// machine speed, because the balancer's clocks (1 s estimate lifetime,
// ejection times) and the window both run on the same clock.

import { once } from 'node:events';
import { Agent, createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { FailureEvent, HostSnapshot, ProxyOptions, RetryEvent, UpstreamSnapshot } from '../src/index.js';
import { frameworks, type Framework } from './frameworks.js';
import { onCleanup, testRegistry } from './support.js';

type Hooks = NonNullable<ProxyOptions['hooks']>;
type HostStateChange = Parameters<NonNullable<Hooks['onHostStateChange']>>[0];
type PanicChange = Parameters<NonNullable<Hooks['onPanic']>>[0];

/** How a replica answers its n-th request (0-based). */
type Answer = (res: ServerResponse, index: number) => void;

const ok =
  (name: string): Answer =>
  (res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(name) });
    res.end(name);
  };

function unavailable(retryAfter?: number): Answer {
  const headers: Record<string, string> = { 'content-type': 'text/plain', 'content-length': '11' };
  if (retryAfter !== undefined) headers['retry-after'] = String(retryAfter);
  return (res) => {
    res.writeHead(503, headers);
    res.end('unavailable');
  };
}

function late(ms: number, then: Answer): Answer {
  return (res, index) => {
    const timer = setTimeout(() => then(res, index), ms);
    res.once('close', () => clearTimeout(timer));
  };
}

/**
 * One upstream replica on loopback that the test can kill (its port closed
 * and its connections destroyed, so connections are refused) and restart on
 * the same port. It counts the requests it receives, with when.
 */
class Replica {
  /** When each request arrived (performance.now()). */
  readonly arrivals: number[] = [];
  answer: Answer;
  port = 0;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();

  private constructor(readonly name: string) {
    this.answer = ok(name);
    this.#server = createServer((req: IncomingMessage, res: ServerResponse) => {
      this.arrivals.push(performance.now());
      req.resume();
      this.answer(res, this.arrivals.length - 1);
    });
    this.#server.keepAliveTimeout = 60_000;
    this.#server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
  }

  static async start(name: string): Promise<Replica> {
    const replica = new Replica(name);
    await replica.restart();
    onCleanup(() => replica.kill());
    return replica;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get requests(): number {
    return this.arrivals.length;
  }

  /** Requests received at or after `since`. */
  requestsSince(since: number): number {
    return this.arrivals.filter((at) => at >= since).length;
  }

  async restart(): Promise<void> {
    this.#server.listen(this.port, '127.0.0.1');
    await once(this.#server, 'listening');
    this.port = (this.#server.address() as AddressInfo).port;
  }

  async kill(): Promise<void> {
    if (!this.#server.listening) return;
    const closed = once(this.#server, 'close');
    this.#server.close();
    for (const socket of this.#sockets) socket.destroy();
    await closed;
  }
}

interface Reply {
  readonly status: number;
  /** The replica that served a 200, or the problem's code. */
  readonly body: string;
}

/** Appends items and wakes the waits whose match they satisfy. */
class Events<T> {
  readonly items: T[] = [];
  readonly #waiting: { match: (item: T) => boolean; resolve: (item: T) => void }[] = [];

  push(item: T): void {
    this.items.push(item);
    for (const waiter of this.#waiting.filter((w) => w.match(item))) {
      this.#waiting.splice(this.#waiting.indexOf(waiter), 1);
      waiter.resolve(item);
    }
  }

  find(match: (item: T) => boolean): T | undefined {
    return this.items.find(match);
  }
}

/** A gateway in one framework in front of a group of replicas, with every hook recorded. */
class Drill {
  /** Host state changes, with when (performance.now()) and how many replies had come by then. */
  readonly changes = new Events<HostStateChange & { at: number; sent: number }>();
  readonly failures: FailureEvent[] = [];
  readonly retries: RetryEvent[] = [];
  readonly panics: PanicChange[] = [];
  readonly replies: Reply[] = [];
  readonly #agent = new Agent({ keepAlive: true, maxSockets: 1 });
  base = '';

  constructor(readonly registry = testRegistry()) {
    onCleanup(() => this.#agent.destroy());
  }

  hooks(): Hooks {
    return {
      onHostStateChange: (change) => this.changes.push({ ...change, at: performance.now(), sent: this.replies.length }),
      onFailure: (event) => this.failures.push(event),
      onRetry: (event) => this.retries.push(event),
      onPanic: (change) => this.panics.push(change),
    };
  }

  snapshot(): UpstreamSnapshot {
    const snapshot = this.registry.get('orders');
    if (snapshot === undefined) throw new Error('no upstream "orders" in the registry');
    return snapshot;
  }

  host(replica: Replica): HostSnapshot {
    const host = this.snapshot().hosts.find((h) => h.url === replica.url);
    if (host === undefined) throw new Error(`${replica.name} is not in the group`);
    return host;
  }

  /** The state changes of one replica, as `to (reason)`. */
  story(replica: Replica): string[] {
    return this.changes.items.filter((c) => c.host === replica.url).map((c) => `${c.to} (${c.reason})`);
  }

  get(): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const req = httpRequest(`${this.base}/api/items`, { agent: this.#agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.once('error', reject);
        res.once('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const body = res.statusCode === 200 ? text : ((JSON.parse(text) as { code?: string }).code ?? text);
          const reply = { status: res.statusCode ?? 0, body };
          this.replies.push(reply);
          resolve(reply);
        });
      });
      req.once('error', reject);
      req.end();
    });
  }

  /**
   * Sequential GETs, `gapMs` apart, until `done()` says so (checked after
   * each reply) or `most` were sent. Returns the replies of this run.
   */
  async drive(most: number, gapMs: number, done: () => boolean = () => false): Promise<Reply[]> {
    const replies: Reply[] = [];
    for (let i = 0; i < most && !done(); i += 1) {
      replies.push(await this.get());
      if (gapMs > 0) await delay(gapMs);
    }
    return replies;
  }

  /** Sequential GETs `gapMs` apart until `done()` (checked before each); `each` runs after each reply. */
  async driveUntil(done: () => boolean, gapMs: number, each: () => void = () => undefined): Promise<Reply[]> {
    const replies: Reply[] = [];
    while (!done()) {
      replies.push(await this.get());
      each();
      await delay(gapMs);
    }
    return replies;
  }

  /** A summary of replies that are not 200, with what `onFailure` said, for a failing assertion's message. */
  errors(replies: readonly Reply[] = this.replies): string {
    const bad = replies.filter((r) => r.status !== 200).map((r) => `${r.status} ${r.body}`);
    return `${bad.length} errors: ${bad.slice(0, 5).join(', ')}; onFailure: ${JSON.stringify(this.failures.slice(0, 5).map((f) => ({ code: f.code, attempts: f.attempts, noRetry: f.noRetry })))}`;
  }
}

async function replicas(): Promise<[Replica, Replica, Replica]> {
  return Promise.all([Replica.start('a'), Replica.start('b'), Replica.start('c')]);
}

async function drill(framework: Framework, hosts: readonly Replica[], options: Omit<ProxyOptions, 'target'> = {}): Promise<Drill> {
  const d = new Drill();
  d.base = await framework.mount({ target: hosts.map((h) => h.url), name: 'orders', registry: d.registry, ...options, hooks: d.hooks() });
  return d;
}

const allOk = (replies: readonly Reply[]): number[] => replies.map((r) => r.status).filter((s) => s !== 200);
const served = (replies: readonly Reply[], replica: Replica): number => replies.filter((r) => r.status === 200 && r.body === replica.name).length;

/** Sequential GETs as fast as they go, bounded: a scenario that needs more is broken. */
const MOST = 400;
/** 20 GET/s. */
const PACED_MS = 50;

// The three frameworks of the issue, at their current majors.
const drilled = frameworks.filter((f) => ['Express 5', 'Fastify 5', 'Koa 3'].includes(f.name));

describe.each(drilled)('$name', (framework) => {
  it.each([
    ['refusing connections', 'UPSTREAM_CONNECT_REFUSED', async (r: Replica) => r.kill()],
    ['answering 503', 'UPSTREAM_STATUS', (r: Replica) => {
      r.answer = unavailable();
      return Promise.resolve();
    }],
  ] as const)('defaults: one host of three %s is ejected after exactly 5 failures, shown, and no client sees an error', async (_what, code, fault) => {
    const [a, b, c] = await replicas();
    await fault(c);
    const d = await drill(framework, [a, b, c]);
    const failedOnC = (): number => d.retries.filter((r) => r.target === c.url).length;

    // 40 requests: the 2 s at 20 GET/s, as a count.
    const before = await d.drive(40, 0, () => d.changes.items.length > 0);
    const ejectedAfter = failedOnC();
    const snapshot = d.host(c);
    const after = await d.drive(30, 0);

    expect(allOk([...before, ...after]), d.errors()).toStrictEqual([]);
    expect(d.changes.items, `not ejected within 40 requests; C: ${JSON.stringify(d.host(c))}`).not.toHaveLength(0);
    expect(d.changes.items.map(({ host, from, to, reason }) => ({ host, from, to, reason }))).toStrictEqual([
      { host: c.url, from: 'healthy', to: 'ejected', reason: 'consecutive-failures' },
    ]);
    // Each failed attempt on C was retried on another host: 5 of them, then none.
    expect(ejectedAfter).toBe(5);
    expect(failedOnC()).toBe(5);
    expect(d.retries.map((r) => r.code)).toStrictEqual(Array(5).fill(code));
    if (code === 'UPSTREAM_STATUS') expect(c.requests).toBe(5);
    expect(snapshot).toMatchObject({ state: 'ejected', ejections: 1, consecutiveFailures: 0, lastFailure: { code } });
    // Ejected for the default 30 s (+ up to 10 % jitter), as the snapshot says.
    expect((snapshot.ejectedUntil ?? 0) - (snapshot.lastFailure?.at ?? 0)).toBeGreaterThanOrEqual(30_000);
    expect((snapshot.ejectedUntil ?? 0) - (snapshot.lastFailure?.at ?? 0)).toBeLessThanOrEqual(33_001);
    expect([d.host(a).state, d.host(b).state]).toStrictEqual(['healthy', 'healthy']);
    expect(served(after, c)).toBe(0);
    expect(d.failures).toStrictEqual([]);
  });

  it("outlierDetection { consecutiveFailures: 3, baseEjectionTime: 400 }: a killed host is ejected after 3 failures, and once restarted serves again when its ejection ends", async () => {
    const [a, b, c] = await replicas();
    const d = await drill(framework, [a, b, c], { outlierDetection: { consecutiveFailures: 3, baseEjectionTime: 400 } });
    await d.drive(10, 0);

    await c.kill();
    // Paced: after the warm-up c may be the costliest host, left out of every
    // draw until its estimate is a second old.
    const faulty = await d.drive(MOST, 10, () => d.changes.items.length > 0);
    const ejected = d.changes.find((e) => e.host === c.url && e.to === 'ejected');
    const failedOnC = d.retries.filter((r) => r.target === c.url).length;
    const { ejectedUntil } = d.host(c);
    await c.restart();
    const restarted = c.requests;
    // Until c has served, with room for the ejection (≤ 440 ms).
    const back = await d.drive(MOST, 10, () => c.requests > restarted);
    const recovered = await d.drive(20, 0);

    expect(allOk([...faulty, ...back, ...recovered]), d.errors()).toStrictEqual([]);
    expect(ejected?.reason, `${faulty.length} requests; c: ${d.story(c).join(', ')}; retries: ${JSON.stringify(d.retries.map((r) => [r.code, r.target === c.url]))}`).toBe('consecutive-failures');
    expect(failedOnC).toBe(3);
    expect((ejectedUntil ?? 0) - (d.host(c).lastFailure?.at ?? 0)).toBeGreaterThanOrEqual(400);
    expect(c.requests, `c got nothing in ${back.length} requests after its restart`).toBeGreaterThan(restarted);
    expect(d.story(c)).toStrictEqual(['ejected (consecutive-failures)', 'healthy (ejection-ended)']);
    // Its first request came after its ejection ended, at least 400 ms after it began.
    const ended = d.changes.find((e) => e.host === c.url && e.reason === 'ejection-ended');
    expect((ended?.at ?? 0) - (ejected?.at ?? 0)).toBeGreaterThanOrEqual(400);
    expect(c.arrivals[restarted]).toBeGreaterThanOrEqual(ended?.at ?? Number.POSITIVE_INFINITY);
    expect(served([...back, ...recovered], c)).toBeGreaterThanOrEqual(1);
    // Back in rotation with no estimate, it is probed at once (slow start
    // ramps its share from its first answer): within 20 requests of the end
    // of its ejection, the "ejection time + 1 s" at 20 GET/s as a count.
    const firstServed = d.replies.findIndex((r, i) => i >= (ended?.sent ?? 0) && r.body === 'c');
    expect(firstServed - (ended?.sent ?? 0) + 1).toBeLessThanOrEqual(20);
    expect(d.host(c)).toMatchObject({ state: 'healthy', ejections: 1, consecutiveFailures: 0 });
  });
});

/** The three frameworks side by side: each drill below runs for seconds, so they run at once. */
function sideBySide(run: (framework: Framework) => Promise<void>): () => Promise<void> {
  return async () => {
    await Promise.all(drilled.map(run));
  };
}

describe('drills of seconds, in Express, Fastify and Koa at once', () => {
  it(
    'after one transient 503 the host still serves: at least 3 of the next 40 sequential GETs at 20/s',
    sideBySide(async (framework) => {
      const [a, b, c] = await replicas();
      const d = await drill(framework, [a, b, c]);
      await d.drive(40, 10);
      // One 503, then 200s again.
      let once = true;
      c.answer = (res, index) => {
        (once ? unavailable() : ok('c'))(res, index);
        once = false;
      };
      await d.drive(MOST, 10, () => !once);
      const next = await d.drive(40, PACED_MS);

      expect(allOk(next), d.errors()).toStrictEqual([]);
      // Measured: c served 6 to 16 of the 40 (15 runs); its healthy peers, in
      // the same windows, 4 to 28 — peak-EWMA's shares swing over seconds.
      // Before d126314 one 503 benched it for ~20 s: 0 of the 40.
      expect(served(next, c), `${framework.name}: c served ${served(next, c)} of the 40`).toBeGreaterThanOrEqual(3);
      expect(d.story(c)).toStrictEqual([]);
    }),
  );

  it(
    'a host whose first answer took 300 ms serves again: at least 2 of the GETs at 20/s from 1.5 s to 3.5 s after',
    sideBySide(async (framework) => {
      const [a, b, c] = await replicas();
      c.answer = (res, index) => (index === 0 ? late(300, ok('c')) : ok('c'))(res, index);
      const d = await drill(framework, [a, b, c]);
      await d.drive(MOST, PACED_MS, () => served(d.replies, c) > 0);
      const slowAt = performance.now();
      await d.driveUntil(() => performance.now() >= slowAt + 3500, PACED_MS);

      const window = c.arrivals.filter((at) => at >= slowAt + 1500 && at < slowAt + 3500).length;
      const all = [a, b, c].reduce((sum, r) => sum + r.arrivals.filter((at) => at >= slowAt + 1500 && at < slowAt + 3500).length, 0);
      expect(allOk(d.replies), d.errors()).toStrictEqual([]);
      // Measured: 3 to 17 of 30 to 34 (15 runs). Before d126314: 0 for 30 s and more.
      expect(window, `${framework.name}: c took ${window} of ${all}`).toBeGreaterThanOrEqual(2);
    }),
  );

  it.each(['peak-ewma', 'round-robin'] as const)(
    "balance %s: one host dead, one answering 503 Retry-After: 5 — the 503 host is backed off at once, the retry goes elsewhere at once, and no client sees an error",
    (balance) => sideBySide(async (framework) => {
      const [a, b, c] = await replicas();
      await a.kill();
      b.answer = unavailable(5);
      const d = await drill(framework, [a, b, c], { balance });

      const replies = await d.drive(100, 0);

      expect(allOk(replies), d.errors()).toStrictEqual([]);
      expect(served(replies, c)).toBe(100);
      expect(b.requests).toBeLessThanOrEqual(2);
      expect(d.story(b)[0]).toBe('ejected (retry-after)');
      expect(d.host(b)).toMatchObject({ state: 'ejected', ejections: 0, lastFailure: { code: 'UPSTREAM_STATUS' } });
      // Backed off for its Retry-After (wall-clock times, each rounded to the ms).
      const backedOff = (d.host(b).ejectedUntil ?? 0) - (d.host(b).lastFailure?.at ?? 0);
      expect(Math.abs(backedOff - 5000)).toBeLessThanOrEqual(1);
      // The retry after b's 503 went to another host at once, not after 5 s.
      const afterB = d.retries.filter((r) => r.target === b.url);
      expect(afterB.map((r) => [r.code, r.delay])).toStrictEqual(Array(b.requests).fill(['UPSTREAM_STATUS', 0]));
      // b's back-off is its own request, not a verdict: it takes none of
      // maxEjectionPercent's room (one host of three), so a is ejected too.
      expect(d.story(a)).toStrictEqual(['ejected (consecutive-failures)']);
      expect(d.host(a)).toMatchObject({ state: 'ejected', lastFailure: { code: 'UPSTREAM_CONNECT_REFUSED' } });
      expect(d.failures).toStrictEqual([]);

      // With c answering 503 Retry-After: 5 as well, no host is left: the
      // request fails, and onFailure says why no further retry was made.
      c.answer = unavailable(5);
      const last = await d.get();
      // c is the last host in rotation that is not failing: it does not back
      // off, and with no other host to try, its Retry-After is passed on at
      // once (or, had a been tried first, after two or three attempts).
      expect(last.status).toBe(502);
      expect([
        ['UPSTREAM_STATUS', 'retry-after', 1],
        ['UPSTREAM_STATUS', 'retry-after', 2],
        ['UPSTREAM_STATUS', 'retries-exhausted', 3],
        ['UPSTREAM_CONNECT_REFUSED', 'retries-exhausted', 3],
      ]).toContainEqual(d.failures.map((f) => [f.code, f.noRetry, f.attempts])[0]);
      expect(d.failures.map((f) => f.code)).toStrictEqual([last.body]);
    })(),
  );

  it(
    'a drill: one host killed then restarted, one answering 503 Retry-After: 1, one 300 ms late, for 2 s or more; then all healed',
    sideBySide(async (framework) => {
      const [a, b, c] = await replicas();
      const d = await drill(framework, [a, b, c], { outlierDetection: { baseEjectionTime: 500 } });
      await d.drive(20, 0);
      const seen = new Map<string, Set<string>>([a, b, c].map((r) => [r.name, new Set<string>()]));
      const watch = (): void => {
        for (const r of [a, b, c]) seen.get(r.name)?.add(d.host(r).state);
      };

      await a.kill();
      b.answer = unavailable(1);
      c.answer = late(300, ok('c'));
      const faultAt = performance.now();
      // At least 2 s, and until both a and b were reported (c's 300 ms make
      // sequential requests few): events, bounded by 8 s.
      const reported = (r: Replica): boolean => [...(seen.get(r.name) ?? [])].some((state) => state === 'ejected' || state === 'failing');
      const duringFault = await d.driveUntil(
        () => (performance.now() >= faultAt + 2000 && reported(a) && reported(b)) || performance.now() >= faultAt + 8000,
        25,
        watch,
      );
      const faultStates = new Map([...seen].map(([name, states]) => [name, [...states].sort()]));
      const faultRetries = d.retries.length;

      await a.restart();
      b.answer = ok('b');
      c.answer = ok('c');
      const healAt = performance.now();
      const afterHeal = await d.driveUntil(() => performance.now() >= healAt + 3000, 10, watch);

      expect(allOk([...duringFault, ...afterHeal]), `${framework.name}: ${d.errors()}`).toStrictEqual([]);
      expect(d.failures).toStrictEqual([]);
      // During the fault, a and b were out of rotation or shown failing; c, slow but answering, stayed healthy.
      expect(faultStates.get('a')?.some((state) => state === 'ejected' || state === 'failing'), `a: ${d.story(a).join(', ')} in ${duringFault.length} requests`).toBe(true);
      expect(faultStates.get('b')?.some((state) => state === 'ejected' || state === 'failing'), `b: ${d.story(b).join(', ')} in ${duringFault.length} requests`).toBe(true);
      expect(d.story(c)).toStrictEqual([]);
      expect(d.story(a)[0]).toMatch(/^(ejected \(consecutive-failures\)|failing \(ejection-limit\))$/);
      expect(d.story(b)[0]).toMatch(/^(ejected \(retry-after\)|failing \(ejection-limit\))$/);
      // Every retry after b's 503 went to another host at once, never after b's 1 s.
      const afterB = d.retries.slice(0, faultRetries).filter((r) => r.target === b.url);
      expect(afterB.length).toBeGreaterThan(0);
      expect(afterB.every((r) => r.code === 'UPSTREAM_STATUS' && r.delay === 0)).toBe(true);
      expect(d.panics).toStrictEqual([]);
      // Healed: every host serves again and the snapshot says so.
      expect(a.requestsSince(healAt), 'a after its restart').toBeGreaterThan(0);
      expect(served(afterHeal, a)).toBeGreaterThan(0);
      expect(served(afterHeal, b)).toBeGreaterThan(0);
      expect(served(afterHeal, c)).toBeGreaterThan(0);
      expect(d.snapshot().hosts.map((h) => [h.state, h.consecutiveFailures])).toStrictEqual([
        ['healthy', 0],
        ['healthy', 0],
        ['healthy', 0],
      ]);
    }),
  );
});

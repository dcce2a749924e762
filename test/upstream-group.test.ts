// UpstreamGroup with its clock and randomness injected: picks, ejections,
// returns, panic, slow start and membership changes, step by step in made-up
// time. Each host gets a real undici Pool to an origin nothing is ever sent
// to, so closing the group is checked for real.

import { Pool } from 'undici';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { LATENCY_TTL_MS } from '../src/upstream/balancer.js';
import { UpstreamGroup, type GroupSettings, type Host, type HostStateChange, type PanicChange, type TargetSpec } from '../src/upstream/group.js';
import { onCleanup } from './support.js';

const detection = { consecutiveFailures: 2, baseEjectionTime: 1000, maxEjectionTime: 10_000, maxEjectionPercent: 50 };

interface Harness {
  readonly group: UpstreamGroup;
  readonly changes: HostStateChange[];
  readonly panics: PanicChange[];
  readonly pools: Pool[];
  /** The test's clock, in ms. */
  now: number;
  /** What `random()` returns next. */
  random: number;
  host(name: string): Host;
  /** Names of the hosts picked by `count` picks with nothing tried. */
  picks(count: number): string[];
  fail(name: string, times?: number): void;
  states(): Record<string, string>;
  /** Closes the group (once: a closed pool refuses a second close). */
  close(): Promise<void>;
}

function origin(name: string): string {
  return `http://${name}.test`;
}

function nameOf(host: Host): string {
  return new URL(host.origin).hostname.replace(/\.test$/, '');
}

function harness(names: (string | [string, number])[], settings: Partial<GroupSettings> = {}): Harness {
  const pools: Pool[] = [];
  const targets: TargetSpec[] = names.map((entry) => (typeof entry === 'string' ? { origin: origin(entry), weight: 1 } : { origin: origin(entry[0]), weight: entry[1] }));
  const h: Harness = {
    now: 1000,
    random: 0,
    changes: [],
    panics: [],
    pools,
    group: undefined as unknown as UpstreamGroup,
    host(name) {
      const found = h.group.hosts.find((host) => nameOf(host) === name);
      if (found === undefined) throw new Error(`no host ${name}`);
      return found;
    },
    picks(count) {
      return Array.from({ length: count }, () => nameOf(h.group.pick(null)));
    },
    fail(name, times = 1) {
      for (let i = 0; i < times; i += 1) h.group.record(h.host(name), 'failure', null, { code: 'UPSTREAM_CONNECT_REFUSED', retryAfter: null });
    },
    states() {
      return Object.fromEntries(h.group.snapshot().map((s) => [new URL(s.url).hostname.replace(/\.test$/, ''), s.state]));
    },
    close() {
      closing ??= h.group.close();
      return closing;
    },
  };
  let closing: Promise<void> | null = null;
  const group = new UpstreamGroup(
    'orders',
    targets,
    {
      balance: 'round-robin',
      outlierDetection: detection,
      healthCheck: null,
      slowStart: 0,
      basePath: '/v1',
      dispatcher: null,
      // Pools to an origin that is never dispatched to: nothing connects.
      createPool: () => {
        const pool = new Pool('http://127.0.0.1:9');
        pools.push(pool);
        return pool;
      },
      ...settings,
    },
    () => h.now,
    () => h.random,
  );
  (h as { group: UpstreamGroup }).group = group;
  group.onStateChange((change) => h.changes.push(change));
  group.onPanic((change) => h.panics.push(change));
  onCleanup(() => h.close());
  return h;
}

afterEach(() => {
  vi.useRealTimers();
});

describe('picking', () => {
  it('a group of one host always picks it, and never ejects it', () => {
    const h = harness(['a']);
    h.fail('a', 10);
    expect(h.picks(3)).toStrictEqual(['a', 'a', 'a']);
    expect(h.states()).toStrictEqual({ a: 'healthy' });
    expect(h.changes).toStrictEqual([]);
  });

  it.each(['least-request', 'peak-ewma', 'round-robin'] as const)('%s: a retry avoids every host already tried while another is left', (balance) => {
    const h = harness(['a', 'b', 'c'], { balance });
    for (const random of [0, 0.5, 0.99]) {
      h.random = random;
      const tried: Host[] = [];
      for (let attempt = 0; attempt < 3; attempt += 1) tried.push(h.group.pick(tried));
      expect(new Set(tried.map(nameOf))).toStrictEqual(new Set(['a', 'b', 'c']));
      // All tried: any candidate will do rather than none.
      expect(['a', 'b', 'c']).toContain(nameOf(h.group.pick(tried)));
    }
  });

  it('hasUntried counts only eligible hosts, or all of them in panic', () => {
    const h = harness(['a', 'b', 'c', 'd'], { outlierDetection: { ...detection, maxEjectionPercent: 100 } });
    h.fail('a', 2);
    const [a, b, c, d] = [h.host('a'), h.host('b'), h.host('c'), h.host('d')];
    expect(h.group.hasUntried([b, c, d])).toBe(false);
    expect(h.group.hasUntried([b, c])).toBe(true);
    h.fail('b', 2);
    h.fail('c', 2);
    expect(h.states()).toStrictEqual({ a: 'ejected', b: 'ejected', c: 'ejected', d: 'healthy' });
    expect(h.group.hasUntried([b, c, d])).toBe(true);
    expect(h.group.hasUntried([a, b, c, d])).toBe(false);
  });

  it('records each response time for peak-EWMA; a failure makes a host neither the fastest nor the slowest', () => {
    const h = harness(['a', 'b', 'c']);
    h.group.record(h.host('a'), 'success', 12);
    expect(h.host('a')).toMatchObject({ latency: 12, latencyAt: 1000 });
    h.group.record(h.host('c'), 'success', 4);
    // No estimate yet: the failure takes its peers' mean (12 and 4).
    h.group.record(h.host('b'), 'failure', null);
    expect(h.host('b')).toMatchObject({ latency: 8, latencyAt: 1000 });
    // A quick failure does not lower it.
    h.group.record(h.host('b'), 'failure', 0.3);
    expect(h.host('b')).toMatchObject({ latency: 8 });
    // A slow one does not make it the slowest: it too takes its peers' mean,
    // here c's 4 (b, ejected by its two failures, is out of rotation).
    h.group.record(h.host('a'), 'failure', 500);
    expect(h.host('a')).toMatchObject({ latency: 4 });
    h.group.record(h.host('a'), 'neutral', null);
    expect(h.host('a')).toMatchObject({ latency: 4 });
  });

  it('peak-ewma: a host benched by one slow answer is tried again once its estimate is a second old', () => {
    const h = harness(['a', 'b', 'c'], { balance: 'peak-ewma' });
    h.group.record(h.host('a'), 'success', 0.5);
    h.group.record(h.host('b'), 'success', 0.5);
    h.group.record(h.host('c'), 'success', 300);
    const seen = new Set<string>();
    for (const random of [0, 0.4, 0.7, 0.99]) {
      h.random = random;
      seen.add(nameOf(h.group.pick(null)));
    }
    expect(seen.has('c')).toBe(false);
    h.now += LATENCY_TTL_MS + 1;
    // Refresh a and b, as traffic would; c's estimate is forgotten.
    h.group.record(h.host('a'), 'success', 0.5);
    h.group.record(h.host('b'), 'success', 0.5);
    h.random = 0.99;
    expect(nameOf(h.group.pick(null))).toBe('c');
    expect(h.group.snapshot().map((host) => host.latencyMs)).toStrictEqual([0.5, 0.5, null]);
  });

  it.each([
    { name: 'a slow 503 (20 ms, peers at 1–2 ms)', latency: 20, code: 'UPSTREAM_STATUS' as const },
    { name: 'a refused connection, after a slow answer of its own', latency: null, code: 'UPSTREAM_CONNECT_REFUSED' as const },
  ])('peak-ewma: a host failing every attempt ($name) keeps its draws and is ejected after consecutiveFailures within 10 picks of 50 ms', ({ latency, code }) => {
    const h = harness(['a', 'b', 'c'], { balance: 'peak-ewma', outlierDetection: { ...detection, consecutiveFailures: 3 } });
    h.group.record(h.host('a'), 'success', 1);
    h.group.record(h.host('b'), 'success', 2);
    // c's own peak: priced above both peers before it starts failing.
    h.group.record(h.host('c'), 'success', 20);
    h.group.record(h.host('c'), 'failure', latency, { code, retryAfter: null });
    const picked: string[] = [];
    for (let i = 0; i < 10 && h.states().c !== 'ejected'; i += 1) {
      h.now += 50;
      h.random = (i * 0.37) % 1;
      const host = h.group.pick(null);
      picked.push(nameOf(host));
      if (nameOf(host) === 'c') h.group.record(host, 'failure', latency, { code, retryAfter: null });
      else h.group.record(host, 'success', nameOf(host) === 'a' ? 1 : 2);
    }
    // Priced at its peers' typical estimate (1.5 ms), c wins its draws against b.
    expect(picked.filter((name) => name === 'c')).toHaveLength(2);
    expect(h.states().c).toBe('ejected');
    expect(h.changes).toStrictEqual([{ upstream: 'orders', host: 'http://c.test', from: 'healthy', to: 'ejected', reason: 'consecutive-failures' }]);
  });
});

describe('ejection', () => {
  it('N failures in a row eject a host: it gets no picks, the snapshot and the hook say so', () => {
    const h = harness(['a', 'b', 'c']);
    h.fail('b');
    expect(h.states()).toStrictEqual({ a: 'healthy', b: 'healthy', c: 'healthy' });
    h.fail('b');
    expect(h.states()).toStrictEqual({ a: 'healthy', b: 'ejected', c: 'healthy' });
    expect(h.changes).toStrictEqual([{ upstream: 'orders', host: 'http://b.test', from: 'healthy', to: 'ejected', reason: 'consecutive-failures' }]);
    expect(h.picks(6)).toStrictEqual(['a', 'c', 'a', 'c', 'a', 'c']);
    expect(h.group.snapshot().map((s) => s.ejections)).toStrictEqual([0, 1, 0]);
    expect(h.group.panics).toBe(0);
  });

  it('a success between failures, and neutral results, keep the host in', () => {
    const h = harness(['a', 'b']);
    h.fail('a');
    h.group.record(h.host('a'), 'success', null);
    h.fail('a');
    h.group.record(h.host('a'), 'neutral', null);
    h.group.record(h.host('a'), 'neutral', null);
    expect(h.states()).toStrictEqual({ a: 'healthy', b: 'healthy' });
    h.fail('a');
    expect(h.states()).toStrictEqual({ a: 'ejected', b: 'healthy' });
  });

  it('outlierDetection off: nothing is ever ejected', () => {
    const h = harness(['a', 'b'], { outlierDetection: null });
    h.fail('a', 50);
    expect(h.states()).toStrictEqual({ a: 'healthy', b: 'healthy' });
  });

  it('maxEjectionPercent: no more than its share of the group is out; a host kept in is shown `failing`, and goes once there is room', () => {
    const h = harness(['a', 'b', 'c']);
    h.fail('a', 2);
    h.fail('b', 5);
    expect(h.states()).toStrictEqual({ a: 'ejected', b: 'failing', c: 'healthy' });
    expect(h.group.snapshot()[1]).toMatchObject({ state: 'failing', consecutiveFailures: 5, ejectedUntil: null });
    h.now += 1000;
    expect(h.states()).toStrictEqual({ a: 'healthy', b: 'failing', c: 'healthy' });
    h.fail('b');
    expect(h.states()).toStrictEqual({ a: 'healthy', b: 'ejected', c: 'healthy' });
    expect(h.changes.map((c) => [c.host, c.from, c.to, c.reason])).toStrictEqual([
      ['http://a.test', 'healthy', 'ejected', 'consecutive-failures'],
      ['http://b.test', 'healthy', 'failing', 'ejection-limit'],
      ['http://a.test', 'ejected', 'healthy', 'ejection-ended'],
      ['http://b.test', 'failing', 'ejected', 'consecutive-failures'],
    ]);
  });

  it('a failing host that answers well is healthy again, and says so', () => {
    const h = harness(['a', 'b'], { outlierDetection: { ...detection, maxEjectionPercent: 0 } });
    h.fail('a', 2);
    h.fail('b', 2);
    expect(h.states()).toStrictEqual({ a: 'ejected', b: 'failing' });
    h.group.record(h.host('b'), 'success', 1);
    expect(h.states()).toStrictEqual({ a: 'ejected', b: 'healthy' });
    expect(h.changes.at(-1)).toMatchObject({ host: 'http://b.test', from: 'failing', to: 'healthy', reason: 'request-succeeded' });
  });

  it('one host of two may always be ejected, even at maxEjectionPercent 0, but never the second', () => {
    const h = harness(['a', 'b'], { outlierDetection: { ...detection, maxEjectionPercent: 0 } });
    h.fail('a', 2);
    h.fail('b', 10);
    expect(h.states()).toStrictEqual({ a: 'ejected', b: 'failing' });
  });

  it.each(['least-request', 'peak-ewma', 'round-robin'] as const)('%s: consecutiveFailures holds under every balancer; the snapshot says why and until when', (balance) => {
    vi.useFakeTimers({ toFake: ['Date'], now: 1_000_000 });
    const h = harness(['a', 'b', 'c'], { balance, outlierDetection: { ...detection, consecutiveFailures: 3 } });
    h.group.record(h.host('a'), 'success', 1);
    h.group.record(h.host('b'), 'success', 1);
    h.group.record(h.host('c'), 'success', 1);
    let failures = 0;
    // Sequential traffic where c refuses every connection.
    for (let i = 0; i < 30 && h.states().c !== 'ejected'; i += 1) {
      h.random = (i * 0.37) % 1;
      const host = h.group.pick(null);
      if (nameOf(host) === 'c') {
        failures += 1;
        h.group.record(host, 'failure', null, { code: 'UPSTREAM_CONNECT_REFUSED', retryAfter: null });
      } else h.group.record(host, 'success', 1);
      h.now += 50;
    }
    expect(failures).toBe(3);
    const c = h.group.snapshot()[2];
    expect(c).toMatchObject({ state: 'ejected', consecutiveFailures: 0, ejections: 1, lastFailure: { code: 'UPSTREAM_CONNECT_REFUSED' } });
    // Wall-clock times: the ejection ends baseEjectionTime (+ up to 10 % jitter) after the last failure.
    const at = c?.lastFailure?.at ?? 0;
    expect(c?.ejectedUntil).toBeGreaterThanOrEqual(at + 1000);
    expect(c?.ejectedUntil).toBeLessThanOrEqual(at + 1100);
  });

  it('failures of an ejected host (picked in panic) do not lengthen its ejection', () => {
    const h = harness(['a', 'b']);
    h.fail('a', 2);
    h.fail('a', 10);
    expect(h.group.snapshot()[0]).toMatchObject({ state: 'ejected', ejections: 1 });
    h.now += 1000;
    expect(h.states().a).toBe('healthy');
  });
});

describe('return after the ejection time', () => {
  it('the host is back when its time is up, noticed at the next snapshot or pick, on probation', () => {
    const h = harness(['a', 'b', 'c']);
    h.fail('a', 2);
    h.now += 999;
    expect(h.states().a).toBe('ejected');
    h.now += 1;
    expect(h.picks(3)).toStrictEqual(['a', 'b', 'c']);
    expect(h.changes.map((c) => [c.from, c.to, c.reason])).toStrictEqual([
      ['healthy', 'ejected', 'consecutive-failures'],
      ['ejected', 'healthy', 'ejection-ended'],
    ]);
    // Probation: one failure sends it out again, for twice as long.
    h.fail('a');
    expect(h.group.snapshot()[0]).toMatchObject({ state: 'ejected', ejections: 2 });
    h.now += 1999;
    expect(h.states().a).toBe('ejected');
    h.now += 1;
    expect(h.states().a).toBe('healthy');
  });

  it('the jitter lengthens an ejection by up to 10 %', () => {
    const h = harness(['a', 'b']);
    h.random = 0.999_999;
    h.fail('a', 2);
    h.now += 1099;
    expect(h.states().a).toBe('ejected');
    h.now += 1;
    expect(h.states().a).toBe('healthy');
  });

  it('a returning host starts afresh: its old latency estimate is dropped, so it is tried at once', () => {
    const h = harness(['a', 'b', 'c'], { balance: 'peak-ewma' });
    h.group.record(h.host('a'), 'success', 1);
    h.group.record(h.host('b'), 'success', 1);
    h.group.record(h.host('c'), 'failure', 900, { code: 'UPSTREAM_STATUS', retryAfter: null });
    h.fail('c', 2);
    expect(h.states().c).toBe('ejected');
    h.now += 1000;
    h.group.record(h.host('a'), 'success', 1);
    h.group.record(h.host('b'), 'success', 1);
    h.random = 0.99;
    expect(nameOf(h.group.pick(null))).toBe('c');
  });

  it.each(['least-request', 'peak-ewma', 'round-robin'] as const)('%s: a returning host takes the very next pick (one probe decides), whatever its slow-start share', (balance) => {
    const h = harness(['a', 'b', 'c'], { balance, slowStart: 10_000 });
    h.fail('c', 2);
    h.now += 1000;
    h.random = 0;
    expect(nameOf(h.group.pick(null))).toBe('c');
    // The probe failed: on probation, it is out again at once, for twice as long.
    h.fail('c');
    expect(h.group.snapshot()[2]).toMatchObject({ state: 'ejected', ejections: 2 });
    h.now += 2000;
    expect(nameOf(h.group.pick(null))).toBe('c');
    // This one succeeded: no second probe while the ramp holds.
    h.group.record(h.host('c'), 'success', 1);
    expect(h.picks(9).filter((name) => name === 'c').length).toBeLessThanOrEqual(1);
  });

  it('a probe is not sent to a host the request already tried', () => {
    const h = harness(['a', 'b', 'c']);
    h.fail('c', 2);
    h.now += 1000;
    expect(nameOf(h.group.pick([h.host('c')]))).not.toBe('c');
    expect(nameOf(h.group.pick(null))).toBe('c');
  });

  it('a returning host ramps up with slow start: 1 pick in 21 at first, its full share after slowStart', () => {
    const h = harness(['a', 'b', 'c'], { slowStart: 10_000 });
    h.fail('c', 2);
    h.now += 1000;
    const count = (picks: string[]): Record<string, number> => {
      const counts: Record<string, number> = { a: 0, b: 0, c: 0 };
      for (const p of picks) counts[p] = (counts[p] ?? 0) + 1;
      return counts;
    };
    expect(count(h.picks(21))).toStrictEqual({ a: 10, b: 10, c: 1 });
    h.now += 10_000;
    expect(count(h.picks(30))).toStrictEqual({ a: 10, b: 10, c: 10 });
  });
});

describe('panic', () => {
  it('fewer than half the hosts eligible: every host is a candidate, each such pick is counted, and entering and leaving are told', () => {
    const h = harness(['a', 'b', 'c'], { outlierDetection: { ...detection, maxEjectionPercent: 100 } });
    h.fail('a', 2);
    expect(h.picks(4)).toStrictEqual(['b', 'c', 'b', 'c']);
    expect(h.group.panics).toBe(0);
    h.fail('b', 2);
    expect(h.states()).toStrictEqual({ a: 'ejected', b: 'ejected', c: 'healthy' });
    const picks = h.picks(6);
    expect(new Set(picks)).toStrictEqual(new Set(['a', 'b', 'c']));
    expect(h.group.panics).toBe(6);
    expect(h.group.panic).toBe(true);
    h.now += 1000;
    h.picks(1);
    expect(h.group.panic).toBe(false);
    expect(h.panics).toStrictEqual([
      { upstream: 'orders', panic: true, eligible: 1, hosts: 3 },
      { upstream: 'orders', panic: false, eligible: 3, hosts: 3 },
    ]);
  });

  it('a host backing off for its own Retry-After is not a verdict: it neither takes room from ejections nor tips the group into panic', () => {
    const h = harness(['a', 'b', 'c']);
    h.group.record(h.host('c'), 'failure', 1, { code: 'UPSTREAM_STATUS', retryAfter: 5000 });
    expect(h.states()).toStrictEqual({ a: 'healthy', b: 'healthy', c: 'ejected' });
    // b is dead: maxEjectionPercent (one of three) still has room for it.
    h.fail('b', 2);
    expect(h.states()).toStrictEqual({ a: 'healthy', b: 'ejected', c: 'ejected' });
    // One host in rotation, one backing off: not panic, so neither the dead nor the busy host gets traffic.
    expect(h.picks(4)).toStrictEqual(['a', 'a', 'a', 'a']);
    expect(h.group.panic).toBe(false);
    expect(h.changes.map((c) => [c.host, c.reason])).toStrictEqual([
      ['http://c.test', 'retry-after'],
      ['http://b.test', 'consecutive-failures'],
    ]);
    // Its time is up after 5 s: back. Its failures in a row went on
    // counting through the back-off: the next one is its second, and ejects it.
    h.now += 5000;
    expect(h.states().c).toBe('healthy');
    h.fail('c');
    expect(h.group.snapshot()[2]).toMatchObject({ state: 'ejected', ejections: 1 });
  });

  it('Retry-After never takes the group down: the last host in rotation that is not failing stays, and back-offs have a room of their own', () => {
    const h = harness(['a', 'b']);
    for (const name of ['a', 'b']) h.group.record(h.host(name), 'failure', 1, { code: 'UPSTREAM_STATUS', retryAfter: 5000 });
    expect(h.states()).toStrictEqual({ a: 'ejected', b: 'healthy' });
    expect(h.picks(3)).toStrictEqual(['b', 'b', 'b']);
    // Four hosts: at most half back off at once (maxEjectionPercent 50).
    const four = harness(['a', 'b', 'c', 'd']);
    for (const name of ['a', 'b', 'c', 'd']) four.group.record(four.host(name), 'failure', 1, { code: 'UPSTREAM_STATUS', retryAfter: 120_000 });
    expect(four.states()).toStrictEqual({ a: 'ejected', b: 'ejected', c: 'healthy', d: 'healthy' });
    // And for at most RETRY_AFTER_MAX_MS (10 s), whatever the host asked.
    expect((four.group.snapshot()[0]?.ejectedUntil ?? 0) - (four.group.snapshot()[0]?.lastFailure?.at ?? 0)).toBe(10_000);
  });

  it('exactly half eligible is not panic', () => {
    const h = harness(['a', 'b', 'c', 'd'], { outlierDetection: { ...detection, maxEjectionPercent: 100 } });
    h.fail('a', 2);
    h.fail('b', 2);
    expect(new Set(h.picks(8))).toStrictEqual(new Set(['c', 'd']));
    expect(h.group.panics).toBe(0);
  });
});

describe('setTargets', () => {
  it('kept hosts keep their state, new ones start on slow start, removed ones are retired and their pools closed', () => {
    vi.useFakeTimers({ toFake: ['Date'], now: 1_000_000 });
    const h = harness(['a', 'b', 'c'], { slowStart: 10_000 });
    h.fail('a', 2);
    const [a, b, c] = [h.host('a'), h.host('b'), h.host('c')];
    const cPool = h.pools[2] as Pool;
    h.group.setTargets([
      { origin: origin('a'), weight: 1 },
      { origin: origin('b'), weight: 1 },
      { origin: origin('d'), weight: 1 },
    ]);
    expect(h.group.hosts.map(nameOf)).toStrictEqual(['a', 'b', 'd']);
    expect(h.host('a')).toBe(a);
    expect(h.host('b')).toBe(b);
    const at = Date.now();
    expect(h.group.snapshot()).toStrictEqual([
      { origin: 'http://a.test', url: 'http://a.test/v1', weight: 1, state: 'ejected', inFlight: 0, ejections: 1, latencyMs: 0.001, consecutiveFailures: 0, lastFailure: { code: 'UPSTREAM_CONNECT_REFUSED', at }, ejectedUntil: at + 1000 },
      { origin: 'http://b.test', url: 'http://b.test/v1', weight: 1, state: 'healthy', inFlight: 0, ejections: 0, latencyMs: null, consecutiveFailures: 0, lastFailure: null, ejectedUntil: null },
      { origin: 'http://d.test', url: 'http://d.test/v1', weight: 1, state: 'healthy', inFlight: 0, ejections: 0, latencyMs: null, consecutiveFailures: 0, lastFailure: null, ejectedUntil: null },
    ]);
    expect(c.removed).toBe(true);
    expect(cPool.closed).toBe(true);
    // Results of attempts still in flight on a removed host change nothing.
    h.group.record(c, 'failure', null);
    h.group.record(c, 'failure', null);
    expect(c.ejected).toBe(false);
    // d joined just now: 10 % of its weight, 1 pick in 11 beside b. a is still out.
    expect(h.picks(11)).toStrictEqual(['b', 'b', 'b', 'b', 'b', 'd', 'b', 'b', 'b', 'b', 'b']);
  });

  it('a new weight for a kept origin makes it a new host', () => {
    const h = harness(['a', 'b']);
    h.fail('a', 2);
    const a = h.host('a');
    h.group.setTargets([
      { origin: origin('a'), weight: 3 },
      { origin: origin('b'), weight: 1 },
    ]);
    expect(h.host('a')).not.toBe(a);
    expect(a.removed).toBe(true);
    expect(h.group.snapshot()[0]).toMatchObject({ weight: 3, state: 'healthy', ejections: 0 });
  });
});

describe('close', () => {
  it('closes every pool the group owns, but not a dispatcher passed in', async () => {
    const shared = new Pool('http://127.0.0.1:9');
    onCleanup(() => shared.close());
    const own = harness(['a', 'b']);
    const passed = harness(['a', 'b'], { dispatcher: shared });
    expect(own.pools).toHaveLength(2);
    expect(passed.pools).toHaveLength(0);
    await own.close();
    await passed.close();
    expect(own.pools.map((p) => p.closed)).toStrictEqual([true, true]);
    expect(shared.closed).toBe(false);
  });

  it('with health checks on: one timer per host, none after close', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const h = harness(['a', 'b', 'c'], { healthCheck: { path: '/healthz', interval: 10_000, timeout: 2000, healthyThreshold: 2, unhealthyThreshold: 2 } });
    expect(vi.getTimerCount()).toBe(3);
    await h.close();
    expect(vi.getTimerCount()).toBe(0);
  });
});

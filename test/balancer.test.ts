// The balancer is pure: hosts carry their counters, time and randomness come
// from the caller. Each rule is checked from a table, with fixed random
// sequences and made-up times.

import { describe, expect, it } from 'vitest';
import { effectiveWeight, LATENCY_DECAY_MS, LATENCY_TTL_MS, latencyOf, pick, recordFailureLatency, recordLatency, slowStartFactor, type Balance, type BalancedHost } from '../src/upstream/balancer.js';

interface TestHost extends BalancedHost {
  readonly name: string;
}

function host(name: string, fields: Partial<BalancedHost> = {}): TestHost {
  return { name, weight: 1, active: 0, current: 0, latency: 0, latencyAt: 0, failed: false, warmingSince: Number.NEGATIVE_INFINITY, ...fields };
}

/** A `random` that plays `values` in order and fails the test if asked for more. */
function sequence(...values: number[]): () => number {
  let next = 0;
  return () => {
    const value = values[next];
    next += 1;
    if (value === undefined) throw new Error(`random() called ${next} times, only ${values.length} values given`);
    return value;
  };
}

const everyone = (): boolean => true;
const noRandom = (): number => {
  throw new Error('random() must not be called');
};

describe('effectiveWeight: slow start', () => {
  // Weight 2, joined at t = 1000, slowStart 10 s: weight × max(0.1, age / slowStart).
  it.each([
    { now: 1000, expected: 0.2 },
    { now: 1500, expected: 0.2 },
    { now: 2000, expected: 0.2 },
    { now: 3000, expected: 0.4 },
    { now: 6000, expected: 1 },
    { now: 10_999, expected: 1.9998 },
    { now: 11_000, expected: 2 },
    { now: 500_000, expected: 2 },
  ])('at t = $now it is $expected', ({ now, expected }) => {
    expect(effectiveWeight(host('a', { weight: 2, warmingSince: 1000 }), now, 10_000)).toBeCloseTo(expected, 10);
  });

  it('a host that never joined late has its full weight at once', () => {
    expect(effectiveWeight(host('a', { weight: 3 }), 0, 10_000)).toBe(3);
  });

  it('slowStart 0 turns the ramp off', () => {
    expect(effectiveWeight(host('a', { weight: 3, warmingSince: 1000 }), 1000, 0)).toBe(3);
  });
});

describe('latency: peak-EWMA', () => {
  it('a host with no sample has no estimate', () => {
    expect(latencyOf(host('a'), 50_000)).toBeNull();
  });

  it('the first sample is taken as is, then decays to 1/e per LATENCY_DECAY_MS unused, while it is fresh', () => {
    const a = host('a');
    recordLatency(a, 40, 1000);
    expect(latencyOf(a, 1000)).toBe(40);
    expect(latencyOf(a, 1000 + LATENCY_TTL_MS)).toBeCloseTo(40 * Math.exp(-LATENCY_TTL_MS / LATENCY_DECAY_MS), 10);
  });

  it('an estimate no answer refreshed for LATENCY_TTL_MS is forgotten, and the next sample replaces it', () => {
    const a = host('a');
    recordLatency(a, 300, 1000);
    expect(latencyOf(a, 1000 + LATENCY_TTL_MS + 1)).toBeNull();
    recordLatency(a, 2, 1000 + LATENCY_TTL_MS + 1);
    expect(latencyOf(a, 1000 + LATENCY_TTL_MS + 1)).toBe(2);
  });

  it('a sample above the estimate replaces it at once (peak-sensitive)', () => {
    const a = host('a');
    recordLatency(a, 5, 1000);
    recordLatency(a, 80, 1001);
    expect(a.latency).toBe(80);
    expect(a.latencyAt).toBe(1001);
  });

  it('a sample below the estimate pulls it down by how long ago the last one was', () => {
    const a = host('a');
    recordLatency(a, 40, 1000);
    recordLatency(a, 10, 1000);
    expect(a.latency).toBe(40);
    recordLatency(a, 10, 1500);
    const decayed = 40 * Math.exp(-500 / LATENCY_DECAY_MS);
    const keep = Math.exp(-500 / LATENCY_DECAY_MS);
    expect(a.latency).toBeCloseTo(decayed * keep + 10 * (1 - keep), 10);
  });
});

describe('latency: a failure makes a host neither the fastest nor the slowest', () => {
  it.each([
    { name: 'a host with an estimate takes its peers’ typical one (a quick failure does not make it the fastest)', fields: { latency: 0.1, latencyAt: 1000 }, ms: 0.05, reference: 3, expected: 3 },
    { name: 'a slow failure does not make it the slowest either (the costliest host never wins a draw)', fields: { latency: 8, latencyAt: 1000 }, ms: 90, reference: 3, expected: 3 },
    { name: 'a host with no estimate takes its peers’ typical one (not 0: it would win every draw)', fields: {}, ms: null, reference: 3, expected: 3 },
    { name: 'a forgotten estimate counts as none', fields: { latency: 300, latencyAt: 1000 - LATENCY_TTL_MS - 1 }, ms: 0.5, reference: 3, expected: 3 },
    { name: 'no peer with an estimate: its own estimate or the failure’s time, the higher', fields: { latency: 8, latencyAt: 1000 }, ms: 90, reference: 0, expected: 90 },
    { name: 'no peer with an estimate: the failure’s own time, at least 0.001 ms', fields: {}, ms: null, reference: 0, expected: 0.001 },
  ])('$name', ({ fields, ms, reference, expected }) => {
    const a = host('a', fields);
    recordFailureLatency(a, ms, reference, 1000);
    expect(a.latency).toBeCloseTo(expected, 10);
    expect(a.latencyAt).toBe(1000);
  });
});

describe('slowStartFactor: a share from 10 % to 100 %', () => {
  it.each([
    { now: 1000, expected: 0.1 },
    { now: 2000, expected: 0.1 },
    { now: 3000, expected: 0.2 },
    { now: 6000, expected: 0.5 },
    { now: 11_000, expected: 1 },
  ])('at t = $now it is $expected', ({ now, expected }) => {
    expect(slowStartFactor(host('a', { warmingSince: 1000 }), now, 10_000)).toBeCloseTo(expected, 10);
  });
});

describe('round-robin (smooth weighted)', () => {
  it('equal weights: each host in turn', () => {
    const hosts = [host('a'), host('b'), host('c')];
    const picks = Array.from({ length: 6 }, () => pick(hosts, everyone, 3, 'round-robin', 0, 0, noRandom).name);
    expect(picks).toStrictEqual(['a', 'b', 'c', 'a', 'b', 'c']);
  });

  it('weights 1, 1, 2: interleaved, exactly in proportion over each cycle of 4', () => {
    const hosts = [host('a'), host('b'), host('c', { weight: 2 })];
    const picks = Array.from({ length: 8 }, () => pick(hosts, everyone, 3, 'round-robin', 0, 0, noRandom).name);
    expect(picks).toStrictEqual(['c', 'a', 'b', 'c', 'c', 'a', 'b', 'c']);
  });

  it('skips the hosts that are not candidates', () => {
    const hosts = [host('a'), host('b'), host('c')];
    const notB = (h: TestHost): boolean => h.name !== 'b';
    const picks = Array.from({ length: 4 }, () => pick(hosts, notB, 2, 'round-robin', 0, 0, noRandom).name);
    expect(picks).toStrictEqual(['a', 'c', 'a', 'c']);
  });

  it('a warming host gets its slow-start share: 1 pick in 21 at 10 %', () => {
    const hosts = [host('a'), host('b'), host('new', { warmingSince: 0 })];
    const counts: Record<string, number> = { a: 0, b: 0, new: 0 };
    for (let i = 0; i < 21; i += 1) {
      const chosen = pick(hosts, everyone, 3, 'round-robin', 0, 10_000, noRandom).name;
      counts[chosen] = (counts[chosen] ?? 0) + 1;
    }
    expect(counts).toStrictEqual({ a: 10, b: 10, new: 1 });
  });

  it('throws when nothing is a candidate (the group never lets that happen)', () => {
    expect(() => pick([host('a')], () => false, 0, 'round-robin', 0, 0, noRandom)).toThrow(new RangeError('no candidate host'));
  });
});

describe('two random choices (least-request, peak-ewma)', () => {
  const balances: Balance[] = ['least-request', 'peak-ewma'];

  it.each(balances)('%s: a single candidate is taken without drawing', (balance) => {
    const hosts = [host('a'), host('b'), host('c')];
    expect(pick(hosts, (h) => h.name === 'b', 1, balance, 0, 0, noRandom).name).toBe('b');
  });

  // Three idle candidates: the first draw picks index floor(r × 3), the second
  // floor(r × 2) among the others (shifted past the first).
  it.each([
    { draws: [0, 0], expected: ['a', 'b'] },
    { draws: [0, 0.99], expected: ['a', 'c'] },
    { draws: [0.5, 0], expected: ['b', 'a'] },
    { draws: [0.5, 0.5], expected: ['b', 'c'] },
    { draws: [0.99, 0], expected: ['c', 'a'] },
    { draws: [0.99, 0.99], expected: ['c', 'b'] },
  ])('draws $draws compare $expected', ({ draws, expected }) => {
    const [first, second] = expected as [string, string];
    // Ties go to the first draw; a busier first draw loses to the second.
    const idle = [host('a'), host('b'), host('c')];
    expect(pick(idle, everyone, 3, 'least-request', 0, 0, sequence(...draws)).name).toBe(first);
    const busy = [host('a'), host('b'), host('c')];
    for (const h of busy) if (h.name === first) h.active = 1;
    expect(pick(busy, everyone, 3, 'least-request', 0, 0, sequence(...draws)).name).toBe(second);
  });

  it('draws only among candidates', () => {
    const hosts = [host('a'), host('b', { active: 2 }), host('c'), host('d')];
    const notA = (h: TestHost): boolean => h.name !== 'a';
    // Candidates b, c, d: first index 0 (b), second index floor(0.6 × 2) = 1, shifted past 0 to 2 (d); d is idle, b busy.
    expect(pick(hosts, notA, 3, 'least-request', 0, 0, sequence(0, 0.6)).name).toBe('d');
  });

  it.each([
    { name: 'least-request weighs load by weight: 3 in flight on weight 4 beats 1 on weight 1', balance: 'least-request' as const, a: { active: 1 }, b: { active: 3, weight: 4 }, expected: 'b' },
    { name: 'least-request ignores latency', balance: 'least-request' as const, a: { active: 0, latency: 500, latencyAt: 1000 }, b: { active: 1 }, expected: 'a' },
    { name: 'peak-ewma: a slow idle host loses to a fast busy one', balance: 'peak-ewma' as const, a: { active: 0, latency: 50, latencyAt: 1000 }, b: { active: 3, latency: 2, latencyAt: 1000 }, expected: 'b' },
    { name: 'peak-ewma: at equal latency, load decides', balance: 'peak-ewma' as const, a: { active: 2, latency: 5, latencyAt: 1000 }, b: { active: 1, latency: 5, latencyAt: 1000 }, expected: 'b' },
    { name: 'peak-ewma: an idle host with no sample yet is tried first', balance: 'peak-ewma' as const, a: { active: 0, latency: 0.2, latencyAt: 1000 }, b: { active: 0 }, expected: 'b' },
    { name: 'peak-ewma: an idle host whose estimate was forgotten is tried again, however slow it was', balance: 'peak-ewma' as const, a: { active: 0, latency: 0.2, latencyAt: 1000 }, b: { active: 0, latency: 300, latencyAt: 1000 - LATENCY_TTL_MS - 1 }, expected: 'b' },
    { name: 'peak-ewma: a slow host with a fresh estimate loses to a fast one', balance: 'peak-ewma' as const, a: { active: 0, latency: 0.2, latencyAt: 1000 }, b: { active: 0, latency: 300, latencyAt: 999 }, expected: 'a' },
    { name: 'peak-ewma: a host holding attempts and no answer yet loses to any host with a sample', balance: 'peak-ewma' as const, a: { active: 1 }, b: { active: 20, latency: 400, latencyAt: 1000 }, expected: 'b' },
    { name: 'peak-ewma: between two hosts with no answer yet, load decides', balance: 'peak-ewma' as const, a: { active: 3 }, b: { active: 2 }, expected: 'b' },
    { name: 'peak-ewma: a host whose latest attempt failed is priced as its rival: a tie, which it wins when drawn first, however high its estimate', balance: 'peak-ewma' as const, a: { active: 0, latency: 50, latencyAt: 1000, failed: true }, b: { active: 0, latency: 2, latencyAt: 1000 }, expected: 'a' },
    { name: 'peak-ewma: … and loses when drawn second, however low its estimate', balance: 'peak-ewma' as const, a: { active: 0, latency: 2, latencyAt: 1000 }, b: { active: 0, latency: 0.1, latencyAt: 1000, failed: true }, expected: 'a' },
    { name: 'peak-ewma: a failed host with more in flight loses to its rival', balance: 'peak-ewma' as const, a: { active: 1, latency: 2, latencyAt: 1000, failed: true }, b: { active: 0, latency: 50, latencyAt: 1000 }, expected: 'b' },
    { name: 'peak-ewma: between two failed hosts, their estimates decide', balance: 'peak-ewma' as const, a: { active: 0, latency: 5, latencyAt: 1000, failed: true }, b: { active: 0, latency: 3, latencyAt: 1000, failed: true }, expected: 'b' },
  ])('$name', ({ balance, a, b, expected }) => {
    const hosts = [host('a', a), host('b', b)];
    expect(pick(hosts, everyone, 2, balance, 1000, 10_000, sequence(0, 0)).name).toBe(expected);
  });

  // Slow start ramps a share, at any concurrency: a warming host that wins a
  // draw keeps it with the probability of its factor (third random value).
  it.each([
    { name: 'at 10 %, a win is kept when the third draw is below 0.1', at: 1000, third: 0.05, expected: 'b' },
    { name: 'at 10 %, a win is given to the other host otherwise', at: 1000, third: 0.1, expected: 'a' },
    { name: 'at 60 %, kept below 0.6', at: 7000, third: 0.59, expected: 'b' },
    { name: 'at 60 %, given away from 0.6', at: 7000, third: 0.6, expected: 'a' },
  ])('least-request, nothing in flight: $name', ({ at, third, expected }) => {
    // b wins on cost: a is busy. b warms from t = 1000 over 10 s.
    const hosts = [host('a', { active: 1 }), host('b', { warmingSince: 1000 })];
    expect(pick(hosts, everyone, 2, 'least-request', at, 10_000, sequence(0, 0, third)).name).toBe(expected);
  });

  // Under peak-ewma a warming host with no estimate is probed at once: the
  // share applies from its first answer (or once its estimate is forgotten, to the next probe).
  it.each([
    { name: 'no estimate: it keeps the draw it won whatever the third draw, and random() is not asked', b: { warmingSince: 1000 }, random: [0, 0], expected: 'b' },
    { name: 'an estimate forgotten: probed again the same way', b: { warmingSince: 1000, latency: 300, latencyAt: 1000 - LATENCY_TTL_MS - 1 }, random: [0, 0], expected: 'b' },
    { name: 'with a fresh estimate: 10 % of the draws it wins', b: { warmingSince: 1000, latency: 0.1, latencyAt: 1000 }, random: [0, 0, 0.1], expected: 'a' },
    { name: 'with a fresh estimate, kept below 0.1', b: { warmingSince: 1000, latency: 0.1, latencyAt: 1000 }, random: [0, 0, 0.09], expected: 'b' },
  ])('peak-ewma, slow start: $name', ({ b, random, expected }) => {
    const hosts = [host('a', { latency: 1, latencyAt: 1000 }), host('b', b)];
    expect(pick(hosts, everyone, 2, 'peak-ewma', 1000, 10_000, sequence(...random)).name).toBe(expected);
  });

  it.each(balances)('%s: a warming host gets about its share of sequential traffic (10 % of a third), never none', (balance) => {
    let seed = 7;
    const random = (): number => {
      seed = (seed * 16807) % 2147483647;
      return (seed - 1) / 2147483646;
    };
    const hosts = [host('a'), host('b'), host('new', { warmingSince: 0 })];
    const counts: Record<string, number> = { a: 0, b: 0, new: 0 };
    for (let i = 0; i < 3000; i += 1) {
      // A ramp far longer than the run: the share stays at 10 %.
      const chosen = pick(hosts, everyone, 3, balance, i, 1e9, random);
      counts[chosen.name] = (counts[chosen.name] ?? 0) + 1;
      // Sequential: one request at a time, each answered in 1 ms.
      if (balance === 'peak-ewma') recordLatency(chosen, 1, i);
    }
    // Its third of 3000 is 1000; 10 % of that is 100 (peak-ewma: up to twice, while it has no estimate).
    expect(counts.new).toBeGreaterThanOrEqual(70);
    expect(counts.new).toBeLessThanOrEqual(250);
  });
});

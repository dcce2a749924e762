// The hedge policy, pure: the delay it picks from the latencies it is fed, the
// budget that bounds extra load, and the validation of the `hedge` option.
// No clock: every latency is a number the test chooses.

import { describe, expect, it } from 'vitest';
import { HedgePolicy, LATENCY_WINDOW, MAX_SAVED_HEDGES, MIN_SAMPLES, resolveHedge } from '../src/policy/hedge.js';
import { createProxy } from '../src/index.js';

function policy(options: Parameters<typeof resolveHedge>[0]): HedgePolicy {
  const resolved = resolveHedge(options);
  if (resolved === null) throw new Error('hedge is off');
  return new HedgePolicy(resolved);
}

describe('hedge delay', () => {
  it('is the fixed delay when one is given, whatever the latencies', () => {
    const p = policy({ delay: 25 });
    for (let i = 0; i < 100; i += 1) p.record(500);
    expect(p.delay()).toBe(25);
  });

  it('is `max` until enough latencies are in, then their percentile within the bounds', () => {
    const p = policy({ delay: { percentile: 90, min: 5, max: 800 } });
    for (let i = 1; i < MIN_SAMPLES; i += 1) p.record(i);
    expect(p.delay()).toBe(800);
    p.record(MIN_SAMPLES);
    // 1..32: the 90th percentile is the 29th value.
    expect(p.delay()).toBe(29);
  });

  it.each([
    { latency: 1, expected: 10, why: 'below min' },
    { latency: 40, expected: 40, why: 'within bounds' },
    { latency: 5000, expected: 1000, why: 'above max' },
  ])('is clamped to the bounds: $why', ({ latency, expected }) => {
    const p = policy(true);
    for (let i = 0; i < MIN_SAMPLES; i += 1) p.record(latency);
    expect(p.delay()).toBe(expected);
  });

  it('follows the latest window of latencies, recomputed every few dozen', () => {
    const p = policy({ delay: { percentile: 95, min: 1, max: 10_000 } });
    for (let i = 0; i < LATENCY_WINDOW; i += 1) p.record(10);
    expect(p.delay()).toBe(10);
    for (let i = 0; i < LATENCY_WINDOW; i += 1) p.record(200);
    expect(p.delay()).toBe(200);
  });

  it('ignores latencies that are not finite or negative', () => {
    const p = policy({ delay: { percentile: 50, min: 1, max: 100 } });
    for (let i = 0; i < MIN_SAMPLES; i += 1) p.record(Number.NaN);
    p.record(-1);
    expect(p.delay()).toBe(100);
  });
});

describe('hedge budget', () => {
  it('holds one hedge at the start, then earns `budget` of one per request', () => {
    const p = policy({ budget: 0.25 });
    expect(p.spend()).toBe(true);
    expect(p.spend()).toBe(false);
    for (let i = 0; i < 3; i += 1) p.earn();
    expect(p.spend()).toBe(false);
    p.earn();
    expect(p.spend()).toBe(true);
    expect(p.snapshot()).toMatchObject({ hedges: 2, refused: 2, tokens: 0 });
  });

  it('bounds hedges to `budget` of requests over a long run, and saves at most a few', () => {
    const p = policy({ budget: 0.1 });
    for (let i = 0; i < 1000; i += 1) p.earn();
    expect(p.snapshot().tokens).toBe(MAX_SAVED_HEDGES);
    let sent = 0;
    for (let i = 0; i < 10_000; i += 1) {
      p.earn();
      if (p.spend()) sent += 1;
    }
    // 10 saved plus one per ten requests after the first (whose earning the full budget could not keep).
    expect(sent).toBe(1009);
  });

  it('earns a whole hedge in exactly 1 / budget requests (no float sum a hair short of one)', () => {
    const p = policy({ budget: 0.1 });
    expect(p.spend()).toBe(true);
    for (let i = 0; i < 9; i += 1) p.earn();
    expect(p.spend()).toBe(false);
    p.earn();
    expect(p.spend()).toBe(true);
    expect(p.snapshot().tokens).toBe(0);
    p.earn();
    expect(p.snapshot().tokens).toBe(0.1);
  });

  it('sends none with a budget of 0 once the first is spent', () => {
    const p = policy({ budget: 0 });
    expect(p.spend()).toBe(true);
    for (let i = 0; i < 100; i += 1) p.earn();
    expect(p.spend()).toBe(false);
  });
});

describe('the hedge option', () => {
  it('is off unless asked for, with the defaults for `true`', () => {
    expect(resolveHedge(undefined)).toBeNull();
    expect(resolveHedge(false)).toBeNull();
    expect(resolveHedge(true)).toEqual({ delay: { percentile: 95, min: 10, max: 1000 }, maxHedges: 1, budget: 0.1, methods: new Set(['GET', 'HEAD']) });
  });

  it.each([
    [{ delay: 0 }, 'Expected `hedge.delay` to be a number of milliseconds from 1 to 60000, got 0.'],
    [{ delay: 'fast' }, 'Expected `hedge.delay` to be a number of milliseconds or an object like { percentile, min, max }, got the string "fast".'],
    [{ delay: { percentile: 100 } }, 'Expected `hedge.delay.percentile` to be a number from 50 to 99.9, got 100.'],
    [{ delay: { min: 50, max: 20 } }, 'Expected `hedge.delay.min` (50) to be at most `hedge.delay.max` (20).'],
    [{ delay: { p: 95 } }, 'Unknown option `hedge.delay.p`. Known options: percentile, min, max.'],
    [{ maxHedges: 0 }, 'Expected `hedge.maxHedges` to be a whole number from 1 to 4, got 0.'],
    [{ budget: 1.5 }, 'Expected `hedge.budget` to be a share of requests from 0 to 1, got 1.5.'],
    [{ methods: 'GET' }, 'Expected `hedge.methods` to be an array of HTTP method names, got the string "GET".'],
    [{ methods: ['GET', 'post'] }, 'Expected `hedge.methods` to hold idempotent methods only (GET, HEAD, OPTIONS, TRACE, PUT, DELETE, PROPFIND, REPORT, SEARCH, QUERY), got POST: a hedge runs the request twice at once.'],
    // Not only POST and PATCH: any method RFC 9110 or WebDAV does not call idempotent (LOCK is "neither safe nor idempotent", CONNECT opens a tunnel).
    [{ methods: ['LOCK'] }, 'Expected `hedge.methods` to hold idempotent methods only (GET, HEAD, OPTIONS, TRACE, PUT, DELETE, PROPFIND, REPORT, SEARCH, QUERY), got LOCK: a hedge runs the request twice at once.'],
    [{ methods: ['GET', 'CONNECT'] }, 'Expected `hedge.methods` to hold idempotent methods only (GET, HEAD, OPTIONS, TRACE, PUT, DELETE, PROPFIND, REPORT, SEARCH, QUERY), got CONNECT: a hedge runs the request twice at once.'],
    [{ methods: ['PURGE'] }, 'Expected `hedge.methods` to hold idempotent methods only (GET, HEAD, OPTIONS, TRACE, PUT, DELETE, PROPFIND, REPORT, SEARCH, QUERY), got PURGE: a hedge runs the request twice at once.'],
    [{ budgett: 0.1 }, 'Unknown option `hedge.budgett`. Known options: delay, maxHedges, budget, methods.'],
    ['yes', 'Expected `hedge` to be a boolean or an object like { delay, budget }, got the string "yes".'],
  ])('%j is a TypeError naming the option', (value, message) => {
    expect(() => resolveHedge(value)).toThrow(new TypeError(message));
  });

  it('is checked when the proxy is created', () => {
    expect(() => createProxy({ target: 'http://127.0.0.1:1', hedge: { budget: -1 } })).toThrow(
      new TypeError('Expected `hedge.budget` to be a share of requests from 0 to 1, got -1.'),
    );
  });
});

// Outlier detection for one host is pure: the state machine is driven with
// made-up times and fixed random draws, and its state checked after each step.

import { describe, expect, it } from 'vitest';
import { backOff, ejectionOver, ejectionRoom, outlierState, recordFailure, recordSuccess, returnToService, type OutlierOptions } from '../src/upstream/outlier.js';

const options: OutlierOptions = { consecutiveFailures: 3, baseEjectionTime: 1000, maxEjectionTime: 4000, maxEjectionPercent: 50 };
const noJitter = (): number => 0;
const fullJitter = (): number => 0.999_999;

/** Fails a host `times` in a row at `now`; returns the last call's ejection length. */
function fail(state: ReturnType<typeof outlierState>, now: number, times = 1, mayEject = true, random = noJitter): number {
  let length = 0;
  for (let i = 0; i < times; i += 1) length = recordFailure(state, now, options, mayEject, random);
  return length;
}

describe('consecutive failures', () => {
  it('ejects on the N-th failure in a row, not before', () => {
    const state = outlierState(0);
    expect(fail(state, 10, 2)).toBe(0);
    expect(state).toMatchObject({ consecutive: 2, ejections: 0, ejectedUntil: 0 });
    expect(fail(state, 10)).toBe(1000);
    expect(state).toStrictEqual({ consecutive: 0, multiplier: 1, ejections: 1, ejectedUntil: 1010, since: 0, probation: false, backedOff: false });
  });

  it('a success in between starts the count again', () => {
    const state = outlierState(0);
    fail(state, 10, 2);
    recordSuccess(state, 11, options);
    expect(fail(state, 12, 2)).toBe(0);
    expect(state.consecutive).toBe(2);
    expect(fail(state, 13)).toBe(1000);
  });

  it('without room in the group the host stays in, and goes at its next failure once there is room', () => {
    const state = outlierState(0);
    expect(fail(state, 10, 5, false)).toBe(0);
    expect(state).toMatchObject({ consecutive: 5, ejections: 0, ejectedUntil: 0 });
    expect(fail(state, 11, 1, true)).toBe(1000);
    expect(state.ejections).toBe(1);
  });
});

describe('ejection length', () => {
  // Each ejection returns the host, which fails again at once (probation):
  // base × n, capped at maxEjectionTime.
  it('is base × n, capped by maxEjectionTime', () => {
    const state = outlierState(0);
    let now = 0;
    const lengths: number[] = [];
    for (let n = 1; n <= 6; n += 1) {
      const length = fail(state, now, n === 1 ? 3 : 1);
      lengths.push(length);
      now += length;
      expect(ejectionOver(state, now)).toBe(true);
    }
    expect(lengths).toStrictEqual([1000, 2000, 3000, 4000, 4000, 4000]);
    expect(state.ejections).toBe(6);
  });

  it.each([
    { random: 0, expected: 1000 },
    { random: 0.5, expected: 1050 },
    { random: 0.999_999, expected: 1100 },
  ])('jitter adds up to 10 %: random() = $random gives $expected ms', ({ random, expected }) => {
    expect(fail(outlierState(0), 0, 3, true, () => random)).toBe(expected);
  });

  it('jitter stays within 10 % of a capped ejection too', () => {
    const state = outlierState(0);
    let now = 0;
    let length = 0;
    for (let n = 1; n <= 8; n += 1) {
      length = fail(state, now, n === 1 ? 3 : 1, true, fullJitter);
      now += length;
      ejectionOver(state, now);
    }
    expect(length).toBe(4400);
  });

  it('a maxEjectionTime below the base never shortens the base', () => {
    const state = outlierState(0);
    expect(recordFailure(state, 0, { ...options, consecutiveFailures: 1, maxEjectionTime: 10 }, true, noJitter)).toBe(1000);
  });
});

describe('return and probation', () => {
  it('the ejection is over at ejectedUntil, not a millisecond before', () => {
    const state = outlierState(0);
    fail(state, 0, 3);
    expect(ejectionOver(state, 999)).toBe(false);
    expect(state.ejectedUntil).toBe(1000);
    expect(ejectionOver(state, 1000)).toBe(true);
    expect(state).toMatchObject({ ejectedUntil: 0, consecutive: 0, since: 1000, probation: true });
    expect(ejectionOver(state, 1001)).toBe(false);
  });

  it('a host on probation goes out again at its first failure, for longer', () => {
    const state = outlierState(0);
    fail(state, 0, 3);
    ejectionOver(state, 1000);
    expect(fail(state, 1001)).toBe(2000);
    expect(state).toMatchObject({ multiplier: 2, ejections: 2, ejectedUntil: 3001, probation: false });
  });

  it('a success ends probation: it takes N failures again', () => {
    const state = outlierState(0);
    fail(state, 0, 3);
    ejectionOver(state, 1000);
    recordSuccess(state, 1001, options);
    expect(state.probation).toBe(false);
    expect(fail(state, 1002, 2)).toBe(0);
    expect(fail(state, 1002)).toBe(2000);
  });

  it('returnToService (a passing health check) puts the host on probation too', () => {
    const state = outlierState(0);
    fail(state, 0, 3);
    returnToService(state, 400);
    expect(state).toMatchObject({ ejectedUntil: 0, since: 400, probation: true });
    expect(fail(state, 401)).toBe(2000);
  });
});

describe('decay of the multiplier', () => {
  /** A host ejected twice in a row (multiplier 2), back in service at `back`. */
  function twiceEjected(): { state: ReturnType<typeof outlierState>; back: number } {
    const state = outlierState(0);
    fail(state, 0, 3);
    ejectionOver(state, 1000);
    fail(state, 1000);
    ejectionOver(state, 3000);
    recordSuccess(state, 3000, options);
    expect(state.multiplier).toBe(2);
    return { state, back: 3000 };
  }

  it.each([
    { inService: 0, multiplier: 2, next: 3000 },
    { inService: 999, multiplier: 2, next: 3000 },
    { inService: 1000, multiplier: 1, next: 2000 },
    { inService: 1999, multiplier: 1, next: 2000 },
    { inService: 2000, multiplier: 0, next: 1000 },
    { inService: 60_000, multiplier: 0, next: 1000 },
  ])('after $inService ms in service the multiplier is $multiplier and the next ejection lasts $next ms', ({ inService, multiplier, next }) => {
    const { state, back } = twiceEjected();
    recordSuccess(state, back + inService, options);
    expect(state.multiplier).toBe(multiplier);
    expect(fail(state, back + inService, 3)).toBe(next);
  });

  it('time spent ejected does not count', () => {
    const state = outlierState(0);
    fail(state, 0, 3);
    // Out from 0 to 1000, noticed only at t = 5000 (returns are lazy): the decay counts from there.
    recordSuccess(state, 4999, options);
    expect(state.multiplier).toBe(1);
    ejectionOver(state, 5000);
    recordSuccess(state, 5999, options);
    expect(state.multiplier).toBe(1);
    recordSuccess(state, 6000, options);
    expect(state.multiplier).toBe(0);
  });

  it('decays in whole steps, keeping the remainder for the next one', () => {
    const state = outlierState(0);
    fail(state, 0, 3);
    ejectionOver(state, 1000);
    fail(state, 1000);
    ejectionOver(state, 3000);
    recordSuccess(state, 4500, options);
    expect(state).toMatchObject({ multiplier: 1, since: 4000 });
    recordSuccess(state, 5000, options);
    expect(state).toMatchObject({ multiplier: 0, since: 5000 });
  });
});

describe('ejectionRoom: how many hosts may be out at once', () => {
  it.each([
    { size: 1, percent: 100, room: 0 },
    { size: 2, percent: 0, room: 1 },
    { size: 2, percent: 50, room: 1 },
    { size: 2, percent: 100, room: 2 },
    { size: 3, percent: 50, room: 1 },
    { size: 3, percent: 100, room: 3 },
    { size: 4, percent: 50, room: 2 },
    { size: 10, percent: 10, room: 1 },
    { size: 10, percent: 35, room: 3 },
    { size: 20, percent: 0, room: 1 },
  ])('$size hosts at $percent %: $room', ({ size, percent, room }) => {
    expect(ejectionRoom(size, percent)).toBe(room);
  });
});

describe('backOff: a host’s own Retry-After', () => {
  it('takes the host out for that long, without a verdict: no ejection counted, no multiplier, no probation after', () => {
    const state = outlierState(0);
    fail(state, 10, 1);
    expect(backOff(state, 10, 3000, options)).toBe(3000);
    expect(state).toMatchObject({ consecutive: 1, multiplier: 0, ejections: 0, ejectedUntil: 3010, backedOff: true });
    expect(ejectionOver(state, 3009)).toBe(false);
    expect(ejectionOver(state, 3010)).toBe(true);
    expect(state).toMatchObject({ ejectedUntil: 0, probation: false, backedOff: false, consecutive: 1 });
    // Not on probation: one more failure does not eject it (2 of 3 in a row).
    expect(fail(state, 3011)).toBe(0);
  });

  it('keeps counting failures in a row through back-offs: a host answering every request with Retry-After is ejected like any other', () => {
    const state = outlierState(0);
    fail(state, 10, 1);
    backOff(state, 10, 1000, options);
    ejectionOver(state, 1010);
    fail(state, 1011, 1);
    backOff(state, 1011, 1000, options);
    ejectionOver(state, 2011);
    expect(state.consecutive).toBe(2);
    expect(fail(state, 2012)).toBe(1000);
    expect(state).toMatchObject({ ejections: 1, multiplier: 1, ejectedUntil: 3012 });
  });

  it('is capped by maxEjectionTime', () => {
    const state = outlierState(0);
    expect(backOff(state, 0, 3_600_000, options)).toBe(options.maxEjectionTime);
  });

  it('does nothing when the host is already out for longer', () => {
    const state = outlierState(0);
    fail(state, 10, 3);
    expect(state.ejectedUntil).toBe(1010);
    expect(backOff(state, 20, 500, options)).toBe(0);
    expect(state.ejectedUntil).toBe(1010);
  });

  it('lengthens an ejection by detection without lifting its probation', () => {
    const state = outlierState(0);
    fail(state, 10, 3);
    expect(backOff(state, 20, 3000, options)).toBe(3000);
    expect(ejectionOver(state, 3020)).toBe(true);
    expect(state.probation).toBe(true);
  });
});

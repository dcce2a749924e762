// The adaptive limit's arithmetic (Gradient2 behind WindowedLimit), driven
// with fake time: every sample carries its own start and latency, so each
// window's boundary is placed exactly. Expected limits are worked out by
// hand from the reference's formulas, written beside each case.

import { describe, expect, it } from 'vitest';
import { ADAPTIVE_DEFAULTS, AdaptiveLimit, resolveAdaptiveConcurrency, type AdaptiveConcurrencyOptions } from '../src/policy/adaptive-limit.js';

/** A limit and a clock: `window` feeds one full window of samples that all end inside it, the last one closing it. */
function driven(options: Partial<AdaptiveConcurrencyOptions> = {}) {
  const limit = new AdaptiveLimit({ ...ADAPTIVE_DEFAULTS, ...options });
  // The first sample closes an empty window at once (the reference's nextUpdateTime starts at 0): a window of one, dropped.
  limit.sample(0, 1, 1);
  let t = 1;
  return {
    limit,
    /** `count` samples of `rtt` ms each with `inFlight` in flight, ending 101 ms apart: the last ends past the 1 s boundary. */
    window: (rtt: number, inFlight: number, count = 10): number => {
      for (let i = 1; i <= count; i += 1) limit.sample(t + 101 * i - rtt, rtt, inFlight);
      t += 101 * count;
      return limit.limit;
    },
  };
}

/** Ten windows at 10 ms with the upstream fully used: the long average's warm-up. */
const warm: [number, number][] = Array.from({ length: 10 }, () => [10, 200]);

describe('adaptive limit: Gradient2 per window', () => {
  it.each([
    {
      name: 'steady latency at full use grows it by queueSize·smoothing a window (20 → 20.8 → 21.6 → 22.4 → 23.2 → 24)',
      options: {},
      windows: [[10, 20], [10, 20], [10, 20], [10, 20], [10, 20]],
      limits: [20, 21, 22, 23, 24],
    },
    {
      name: 'an app-limited upstream (in flight below half the limit) does not grow it',
      options: {},
      windows: [[10, 9], [10, 9], [10, 9]],
      limits: [20, 20, 20],
    },
    {
      name: 'latency 4× the long average cuts it by the gradient 1.5·17.5/40 = 0.656 (102.4 → 0.8·102.4 + 0.2·(0.656·102.4 + 4) = 96.16)',
      options: { initial: 100, max: 200 },
      windows: [[10, 100], [10, 100], [10, 100], [40, 100]],
      limits: [100, 101, 102, 96],
    },
    {
      name: 'a gradient below 0.5 is held at 0.5 (after 10 windows at 10 ms: 108 → 0.8·108 + 0.2·(0.5·108 + 4) = 98)',
      options: { initial: 100 },
      windows: [...warm, [1000, 200]],
      limits: [100, 101, 102, 103, 104, 104, 105, 106, 107, 108, 98],
    },
    {
      name: 'it never rises above max',
      options: { initial: 20, min: 1, max: 22 },
      windows: [[10, 22], [10, 22], [10, 22], [10, 22]],
      limits: [20, 21, 22, 22],
    },
    {
      name: 'smoothing 1 moves it all the way (60 → 0.5·60 + 4 = 34 → 21 → 14.5)',
      options: { initial: 20, min: 1, smoothing: 1 },
      windows: [...warm, [400, 200], [400, 200], [400, 200]],
      limits: [24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 34, 21, 14],
    },
    {
      name: 'it never falls below min (the same, with min 20)',
      options: { initial: 20, min: 20, smoothing: 1 },
      windows: [...warm, [400, 200], [400, 200], [400, 200]],
      limits: [24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 34, 21, 20],
    },
  ])('$name', ({ options, windows, limits }) => {
    const { window } = driven(options);
    expect(windows.map(([rtt = 0, inFlight = 0]) => window(rtt, inFlight))).toStrictEqual(limits);
  });

  it('a window with fewer than windowSize samples, or of samples under 100 µs, moves nothing', () => {
    const { limit, window } = driven();
    expect(window(10, 20, 9)).toBe(20);
    expect(window(0.05, 20, 20)).toBe(20);
    expect(limit.windows).toBe(0);
    expect(limit.longRtt).toBe(0);
  });

  it('the long average is a mean over 10 windows, then an exponential average with factor 2/(longWindow + 1)', () => {
    const { limit, window } = driven();
    for (let i = 0; i < 10; i += 1) window(10, 20);
    expect(limit.longRtt).toBe(10);
    window(20, 20);
    expect(limit.longRtt).toBeCloseTo(10 * (1 - 2 / 601) + 20 * (2 / 601), 9);
    expect(limit.shortRtt).toBe(20);
  });

  it('once latency falls below half the long average, the long average decays by 5 % a window', () => {
    const { limit, window } = driven();
    window(10, 20);
    window(40, 20);
    // mean(10, 40) = 25; then mean(10, 40, 5) = 18.33…, over 2 × 5: decayed to 17.41…
    window(5, 20);
    expect(limit.longRtt).toBeCloseTo((55 / 3) * 0.95, 9);
  });

  it('a window lasts max(2 × its fastest sample, minWindowTime) capped at maxWindowTime', () => {
    const limit = new AdaptiveLimit({ ...ADAPTIVE_DEFAULTS, minWindowTime: 100, maxWindowTime: 300, windowSize: 1 });
    limit.sample(0, 200, 20); // closes a window of one at 200: the next ends at 200 + min(max(400, 100), 300) = 500
    expect(limit.windows).toBe(1);
    limit.sample(250, 200, 20); // ends at 450: inside the window
    expect(limit.windows).toBe(1);
    limit.sample(310, 200, 20); // ends at 510: closes it
    expect(limit.windows).toBe(2);
  });
});

describe('adaptiveConcurrency option', () => {
  it('true is the reference defaults; an object changes some; false is none', () => {
    expect(resolveAdaptiveConcurrency(true)).toStrictEqual({
      initial: 20,
      min: 20,
      max: 200,
      smoothing: 0.2,
      rttTolerance: 1.5,
      longWindow: 600,
      queueSize: 4,
      minWindowTime: 1000,
      maxWindowTime: 1000,
      windowSize: 10,
    });
    expect(resolveAdaptiveConcurrency({ min: 5, initial: 10 })).toMatchObject({ min: 5, initial: 10, max: 200 });
    expect(resolveAdaptiveConcurrency(false)).toBeNull();
    expect(resolveAdaptiveConcurrency(undefined)).toBeNull();
  });

  it.each([
    ['yes', 'Expected `adaptiveConcurrency` to be a boolean or an object like { min, max }, got the string "yes".'],
    [{ min: 0 }, 'Expected `adaptiveConcurrency.min` to be a whole number of attempts from 1 to 100000, got 0.'],
    [{ smoothing: 2 }, 'Expected `adaptiveConcurrency.smoothing` to be a number above 0 and at most 1, got 2.'],
    [{ minWindowTime: Number.NaN }, 'Expected `adaptiveConcurrency.minWindowTime` to be a number of milliseconds from 1 to 60000, got NaN.'],
    [{ min: 30, max: 20, initial: 25 }, 'Expected `adaptiveConcurrency.min` (30) to be at most `adaptiveConcurrency.max` (20).'],
    [{ initial: 5 }, 'Expected `adaptiveConcurrency.initial` (5) to lie from `min` (20) to `max` (200).'],
    [{ limit: 5 }, 'Unknown option `adaptiveConcurrency.limit`. Known options: initial, min, max, smoothing, rttTolerance, longWindow, queueSize, minWindowTime, maxWindowTime, windowSize.'],
  ])('%j is a TypeError naming it', (value, message) => {
    expect(() => resolveAdaptiveConcurrency(value)).toThrow(new TypeError(message));
  });
});

// An adaptive concurrency limit: Netflix concurrency-limits' Gradient2Limit
// behind its WindowedLimit, ported from the reference
// (github.com/Netflix/concurrency-limits, commit 78a74b9, files
// concurrency-limits-core/.../limit/Gradient2Limit.java, WindowedLimit.java,
// measurement/ExpAvgMeasurement.java, window/ImmutableAverageSampleWindow.java).
// Pure: every sample carries its own times, so tests drive it with fake time.
// Times are milliseconds here where the reference counts nanoseconds.

/** The adaptive limit's settings. Every default is the reference's. */
export interface AdaptiveConcurrencyOptions {
  /** The limit before any window has been measured, in attempts in flight. Default `20`. */
  initial: number;
  /** The limit never falls below this. Default `20`. */
  min: number;
  /** The limit never rises above this. Default `200`. */
  max: number;
  /** How far one window moves the limit toward its new estimate, from 0 (never) to 1 (all the way). Default `0.2`. */
  smoothing: number;
  /** How much slower than the long-term average a window may be before the limit shrinks (`1.5` = 50 % slower). Default `1.5`. */
  rttTolerance: number;
  /** The long-term average's window, in windows (an exponential average with factor 2/(n+1)). Default `600`. */
  longWindow: number;
  /** Headroom added to the limit at each window, in attempts: lets it probe upward. Default `4`. */
  queueSize: number;
  /** The shortest window, in ms: samples are averaged over at least this long. Default `1000`. */
  minWindowTime: number;
  /** The longest window, in ms. Default `1000`. */
  maxWindowTime: number;
  /** The fewest samples that make a window count; a window with fewer is dropped. Default `10`. */
  windowSize: number;
}

export const ADAPTIVE_DEFAULTS: Readonly<AdaptiveConcurrencyOptions> = Object.freeze({
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

/** The reference ignores a sample faster than 100 µs (WindowedLimit's DEFAULT_MIN_RTT_THRESHOLD): no network call is that fast. */
const MIN_RTT_MS = 0.1;
/** ExpAvgMeasurement's warm-up: the first 10 windows are a plain mean. */
const WARMUP = 10;
/** Long RTT this many times the short one: load has passed, decay the long average (Gradient2Limit). */
const RECOVERY_RATIO = 2;
const RECOVERY_DECAY = 0.95;

/** Samples of one window: ImmutableAverageSampleWindow. */
interface Window {
  count: number;
  sum: number;
  minRtt: number;
  maxInFlight: number;
}

const emptyWindow = (): Window => ({ count: 0, sum: 0, minRtt: Number.POSITIVE_INFINITY, maxInFlight: 0 });

export class AdaptiveLimit {
  readonly options: Readonly<AdaptiveConcurrencyOptions>;
  #estimate: number;
  #window: Window = emptyWindow();
  #nextUpdate = 0;
  #long = 0;
  #longCount = 0;
  #longSum = 0;
  #lastRtt = 0;
  /** Windows fed to the gradient so far. */
  windows = 0;

  constructor(options: Readonly<AdaptiveConcurrencyOptions> = ADAPTIVE_DEFAULTS) {
    this.options = options;
    this.#estimate = options.initial;
  }

  /** The most attempts that may be in flight now. */
  get limit(): number {
    return Math.floor(this.#estimate);
  }

  /** The latest window's average latency, in ms (0 before the first). */
  get shortRtt(): number {
    return this.#lastRtt;
  }

  /** The long-term average latency, in ms (0 before the first window). */
  get longRtt(): number {
    return this.#long;
  }

  /**
   * One attempt's latency: it started at `start` (ms, any monotonic clock),
   * took `rtt` ms, and `inFlight` attempts were in flight when it started,
   * itself included. Returns the limit after it.
   */
  sample(start: number, rtt: number, inFlight: number): number {
    if (!(rtt >= MIN_RTT_MS)) return this.limit;
    const window = this.#window;
    window.count += 1;
    window.sum += rtt;
    window.minRtt = Math.min(window.minRtt, rtt);
    window.maxInFlight = Math.max(window.maxInFlight, inFlight);
    const end = start + rtt;
    if (end > this.#nextUpdate) {
      const { minWindowTime, maxWindowTime, windowSize } = this.options;
      this.#window = emptyWindow();
      this.#nextUpdate = end + Math.min(Math.max(window.minRtt * 2, minWindowTime), maxWindowTime);
      if (window.count >= windowSize) this.#update(window.sum / window.count, window.maxInFlight);
    }
    return this.limit;
  }

  /** Gradient2Limit._update with one window's average latency and its most attempts in flight. */
  #update(shortRtt: number, inFlight: number): void {
    const { smoothing, rttTolerance, queueSize, min, max, longWindow } = this.options;
    this.windows += 1;
    this.#lastRtt = shortRtt;
    const longRtt = this.#addLong(shortRtt, longWindow);
    if (longRtt / shortRtt > RECOVERY_RATIO) this.#long = longRtt * RECOVERY_DECAY;
    // Don't grow while the application, not the limit, bounds concurrency.
    if (inFlight < this.#estimate / 2) return;
    // Never cut by more than half at once: one slow window is not a collapse.
    const gradient = Math.max(0.5, Math.min(1, (rttTolerance * longRtt) / shortRtt));
    const next = this.#estimate * gradient + queueSize;
    const smoothed = this.#estimate * (1 - smoothing) + next * smoothing;
    this.#estimate = Math.max(min, Math.min(max, smoothed));
  }

  /** ExpAvgMeasurement(longWindow, warm-up 10).add. */
  #addLong(value: number, window: number): number {
    if (this.#longCount < WARMUP) {
      this.#longCount += 1;
      this.#longSum += value;
      this.#long = this.#longSum / this.#longCount;
    } else {
      const factor = 2 / (window + 1);
      this.#long = this.#long * (1 - factor) + value * factor;
    }
    return this.#long;
  }
}

function fail(option: string, expected: string, value: unknown): never {
  const shown = typeof value === 'string' ? `the string ${JSON.stringify(value)}` : typeof value === 'object' && value !== null ? 'an object' : String(value);
  throw new TypeError(`Expected \`${option}\` to be ${expected}, got ${shown}.`);
}

const RANGES: Record<keyof AdaptiveConcurrencyOptions, { expected: string; valid: (n: number) => boolean }> = {
  initial: { expected: 'a whole number of attempts from 1 to 100000', valid: (n) => Number.isInteger(n) && n >= 1 && n <= 100_000 },
  min: { expected: 'a whole number of attempts from 1 to 100000', valid: (n) => Number.isInteger(n) && n >= 1 && n <= 100_000 },
  max: { expected: 'a whole number of attempts from 1 to 100000', valid: (n) => Number.isInteger(n) && n >= 1 && n <= 100_000 },
  smoothing: { expected: 'a number above 0 and at most 1', valid: (n) => n > 0 && n <= 1 },
  rttTolerance: { expected: 'a number from 1 to 100', valid: (n) => n >= 1 && n <= 100 },
  longWindow: { expected: 'a whole number of windows from 1 to 100000', valid: (n) => Number.isInteger(n) && n >= 1 && n <= 100_000 },
  queueSize: { expected: 'a whole number of attempts from 0 to 1000', valid: (n) => Number.isInteger(n) && n >= 0 && n <= 1000 },
  minWindowTime: { expected: 'a number of milliseconds from 1 to 60000', valid: (n) => n >= 1 && n <= 60_000 },
  maxWindowTime: { expected: 'a number of milliseconds from 1 to 60000', valid: (n) => n >= 1 && n <= 60_000 },
  windowSize: { expected: 'a whole number of samples from 1 to 100000', valid: (n) => Number.isInteger(n) && n >= 1 && n <= 100_000 },
};

/** The `adaptiveConcurrency` option: `true` for the reference's defaults, an object to change some, `false`/absent for none. */
export function resolveAdaptiveConcurrency(value: unknown): Readonly<AdaptiveConcurrencyOptions> | null {
  if (value === undefined || value === false) return null;
  if (value === true) return ADAPTIVE_DEFAULTS;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('adaptiveConcurrency', 'a boolean or an object like { min, max }', value);
  const given = value as Record<string, unknown>;
  const known = Object.keys(RANGES);
  for (const key of Object.keys(given)) {
    if (!known.includes(key)) throw new TypeError(`Unknown option \`adaptiveConcurrency.${key}\`. Known options: ${known.join(', ')}.`);
  }
  const resolved = { ...ADAPTIVE_DEFAULTS };
  for (const key of known as (keyof AdaptiveConcurrencyOptions)[]) {
    const v = given[key];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || !RANGES[key].valid(v)) fail(`adaptiveConcurrency.${key}`, RANGES[key].expected, v);
    resolved[key] = v;
  }
  if (resolved.min > resolved.max) throw new TypeError(`Expected \`adaptiveConcurrency.min\` (${resolved.min}) to be at most \`adaptiveConcurrency.max\` (${resolved.max}).`);
  if (resolved.initial < resolved.min || resolved.initial > resolved.max) {
    throw new TypeError(`Expected \`adaptiveConcurrency.initial\` (${resolved.initial}) to lie from \`min\` (${resolved.min}) to \`max\` (${resolved.max}).`);
  }
  if (resolved.minWindowTime > resolved.maxWindowTime) {
    throw new TypeError(`Expected \`adaptiveConcurrency.minWindowTime\` (${resolved.minWindowTime}) to be at most \`maxWindowTime\` (${resolved.maxWindowTime}).`);
  }
  return Object.freeze(resolved);
}

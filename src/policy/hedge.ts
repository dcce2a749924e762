// Hedged requests: when an idempotent request's first attempt has no response
// head after a delay, the same request goes to another host and the first head
// wins (Finagle's backup requests, gRPC's hedging policy of gRFC A6, Envoy's
// `hedge_on_per_try_timeout`). This file is the policy, pure and clock-free:
// the options, the delay (fixed, or a percentile of the upstream's recent head
// latency within bounds, as Finagle derives its backup delay) and the budget
// that bounds the extra load. The race itself is src/exchange/hedge-race.ts.

/** A delay that follows the upstream: a percentile of its recent head latencies, kept within bounds. */
export interface HedgeDelay {
  /** Which percentile of recent head latencies (time from an attempt's start to its response head), from 50 to 99.9. Default `95`. */
  percentile: number;
  /** The delay never falls below this, in ms. Default `10`. */
  min: number;
  /** The delay never rises above this, in ms; it is also the delay until enough latencies are measured. Default `1000`. */
  max: number;
}

/** Hedged requests' settings. */
export interface HedgeOptions {
  /** How long an attempt waits for its response head before a hedge goes out: whole ms, or a percentile of recent latency. Default `{ percentile: 95, min: 10, max: 1000 }`. */
  delay: number | Readonly<HedgeDelay>;
  /** The most hedges per request (attempts beyond the first, in flight together), from 1 to 4. Default `1`. */
  maxHedges: number;
  /** The share of requests that may be hedged, over time, from 0 to 1: each hedgeable request earns this much of a hedge and each hedge spends one (at most 10 saved). Default `0.1` (Finagle's `maxExtraLoad` ceiling). */
  budget: number;
  /** The methods that may be hedged: idempotent, and safe to run twice at once. Default `['GET', 'HEAD']`. */
  methods: ReadonlySet<string>;
}

export const HEDGE_DEFAULTS = Object.freeze({
  delay: Object.freeze({ percentile: 95, min: 10, max: 1000 }),
  maxHedges: 1,
  budget: 0.1,
  methods: Object.freeze(['GET', 'HEAD']),
});

/** Latencies kept for the percentile: the most recent ones. */
export const LATENCY_WINDOW = 512;
/** Below this many latencies the percentile says little: the delay is `max`. */
export const MIN_SAMPLES = 32;
/** The percentile is computed again after this many new latencies (a sort of the window, not one per request). */
const RECOMPUTE_EVERY = 32;
/** The most hedges the budget saves up: a burst after a quiet spell stays small. */
export const MAX_SAVED_HEDGES = 10;
/** The budget starts with one hedge: the first slow request of a new proxy may be hedged. */
const INITIAL_HEDGES = 1;
/** The budget counts in millionths of a hedge, whole numbers: ten earnings of 0.1 make exactly one hedge, which a float sum (0.9999999999999999) does not. */
const UNIT = 1_000_000;

/** What a health endpoint shows about hedging on one upstream. */
export interface HedgeSnapshot {
  /** The delay a request starting now would wait before its hedge, in ms. */
  readonly delay: number;
  /** Hedges sent since the start. */
  readonly hedges: number;
  /** Requests whose winning response came from a hedge, since the start. */
  readonly wins: number;
  /** Hedges the budget refused since the start. */
  readonly refused: number;
  /** Hedges the budget holds now. */
  readonly tokens: number;
}

/** One upstream's hedging state: recent latencies, the budget, and counters. */
export class HedgePolicy {
  readonly #samples = new Float64Array(LATENCY_WINDOW);
  #count = 0;
  #next = 0;
  #fresh = 0;
  #percentile: number | null = null;
  #tokens = INITIAL_HEDGES * UNIT;
  readonly #earning: number;
  hedges = 0;
  wins = 0;
  refused = 0;

  constructor(readonly options: Readonly<HedgeOptions>) {
    this.#earning = Math.round(options.budget * UNIT);
  }

  /** A head latency in ms (or, for an attempt cancelled before its head, the time it had waited: a lower bound, so the slow ones that lose still count). */
  record(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    this.#samples[this.#next] = ms;
    this.#next = (this.#next + 1) % LATENCY_WINDOW;
    if (this.#count < LATENCY_WINDOW) this.#count += 1;
    this.#fresh += 1;
    if (this.#percentile === null && this.#count < MIN_SAMPLES) return;
    if (this.#percentile === null || this.#fresh >= RECOMPUTE_EVERY) this.#recompute();
  }

  #recompute(): void {
    this.#fresh = 0;
    const { delay } = this.options;
    if (typeof delay === 'number') return;
    const sorted = this.#samples.slice(0, this.#count).sort();
    const index = Math.min(this.#count - 1, Math.ceil((delay.percentile / 100) * this.#count) - 1);
    this.#percentile = sorted[Math.max(0, index)] ?? null;
  }

  /** How long an attempt starting now waits for its head before a hedge goes out, in ms. */
  delay(): number {
    const { delay } = this.options;
    if (typeof delay === 'number') return delay;
    if (this.#percentile === null) return delay.max;
    return Math.min(delay.max, Math.max(delay.min, this.#percentile));
  }

  /** A request that may be hedged began: it earns its share of a hedge. */
  earn(): void {
    this.#tokens = Math.min(MAX_SAVED_HEDGES * UNIT, this.#tokens + this.#earning);
  }

  /** Spends one hedge when the budget has one; `false` (and counted) when it does not. */
  spend(): boolean {
    if (this.#tokens < UNIT) {
      this.refused += 1;
      return false;
    }
    this.#tokens -= UNIT;
    this.hedges += 1;
    return true;
  }

  snapshot(): HedgeSnapshot {
    return { delay: this.delay(), hedges: this.hedges, wins: this.wins, refused: this.refused, tokens: this.#tokens / UNIT };
  }
}

function fail(option: string, expected: string, value: unknown): never {
  const shown = typeof value === 'string' ? `the string ${JSON.stringify(value)}` : typeof value === 'object' && value !== null ? 'an object' : String(value);
  throw new TypeError(`Expected \`${option}\` to be ${expected}, got ${shown}.`);
}

function milliseconds(option: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 1 || value > 60_000) fail(option, 'a number of milliseconds from 1 to 60000', value);
  return value;
}

function resolveDelay(value: unknown): number | Readonly<HedgeDelay> {
  if (value === undefined) return HEDGE_DEFAULTS.delay;
  if (typeof value === 'number') return milliseconds('hedge.delay', value);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('hedge.delay', 'a number of milliseconds or an object like { percentile, min, max }', value);
  const given = value as Record<string, unknown>;
  const known = ['percentile', 'min', 'max'];
  for (const key of Object.keys(given)) {
    if (!known.includes(key)) throw new TypeError(`Unknown option \`hedge.delay.${key}\`. Known options: ${known.join(', ')}.`);
  }
  const percentile = given.percentile ?? HEDGE_DEFAULTS.delay.percentile;
  if (typeof percentile !== 'number' || !Number.isFinite(percentile) || percentile < 50 || percentile > 99.9) fail('hedge.delay.percentile', 'a number from 50 to 99.9', percentile);
  const min = given.min === undefined ? HEDGE_DEFAULTS.delay.min : milliseconds('hedge.delay.min', given.min);
  const max = given.max === undefined ? HEDGE_DEFAULTS.delay.max : milliseconds('hedge.delay.max', given.max);
  if (min > max) throw new TypeError(`Expected \`hedge.delay.min\` (${min}) to be at most \`hedge.delay.max\` (${max}).`);
  return Object.freeze({ percentile, min, max });
}

/**
 * The methods a hedge may run twice at once: an allowlist, not a denylist of
 * POST and PATCH, so LOCK, CONNECT or a made-up PURGE cannot slip through.
 * RFC 9110 §9.2.2's idempotent methods, WebDAV's safe reads (RFC 4918 PROPFIND,
 * RFC 3253 REPORT, RFC 5323 SEARCH) and the safe QUERY method.
 */
const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE', 'PROPFIND', 'REPORT', 'SEARCH', 'QUERY']);

/** The `hedge` option: `true` for the defaults, an object to change some, `false`/absent for none. */
export function resolveHedge(value: unknown): Readonly<HedgeOptions> | null {
  if (value === undefined || value === false) return null;
  if (value !== true && (typeof value !== 'object' || value === null || Array.isArray(value))) fail('hedge', 'a boolean or an object like { delay, budget }', value);
  const given: Record<string, unknown> = value === true ? {} : (value as Record<string, unknown>);
  const known = ['delay', 'maxHedges', 'budget', 'methods'];
  for (const key of Object.keys(given)) {
    if (!known.includes(key)) throw new TypeError(`Unknown option \`hedge.${key}\`. Known options: ${known.join(', ')}.`);
  }
  const maxHedges = given.maxHedges ?? HEDGE_DEFAULTS.maxHedges;
  if (typeof maxHedges !== 'number' || !Number.isInteger(maxHedges) || maxHedges < 1 || maxHedges > 4) fail('hedge.maxHedges', 'a whole number from 1 to 4', maxHedges);
  const budget = given.budget ?? HEDGE_DEFAULTS.budget;
  if (typeof budget !== 'number' || !Number.isFinite(budget) || budget < 0 || budget > 1) fail('hedge.budget', 'a share of requests from 0 to 1', budget);
  const methods = given.methods ?? HEDGE_DEFAULTS.methods;
  if (!Array.isArray(methods) || methods.some((m) => typeof m !== 'string' || !/^[A-Za-z]+$/.test(m))) fail('hedge.methods', 'an array of HTTP method names', methods);
  const names = (methods as string[]).map((m) => m.toUpperCase());
  const unsafe = names.find((m) => !IDEMPOTENT.has(m));
  if (unsafe !== undefined) {
    throw new TypeError(`Expected \`hedge.methods\` to hold idempotent methods only (${[...IDEMPOTENT].join(', ')}), got ${unsafe}: a hedge runs the request twice at once.`);
  }
  return Object.freeze({ delay: resolveDelay(given.delay), maxHedges, budget, methods: new Set(names) });
}

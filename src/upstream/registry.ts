// Per-upstream state shared by every proxy to the same upstream, keyed by the
// upstream's name (or origin): the circuit breaker, the in-flight count for
// the concurrency limit, and the retry budget. Proxies use the default
// registry unless given one, so two apps — or two tests — in one process can
// keep theirs apart. Proxies that share an upstream's key must agree on what
// it is (its origin) and on the settings of the state they share.

import { UpstreamBreaker, type BreakerOptions, type BreakerState, type BreakerStats } from './breaker.js';
import { RetryBudget } from './retry-budget.js';

export class UpstreamState {
  readonly key: string;
  readonly settings: UpstreamSettings;
  readonly budget: RetryBudget;
  readonly breaker: UpstreamBreaker | null;
  /** The most attempts in flight at once, or `null` for no limit. */
  readonly capacity: number | null;
  /** Attempts in flight now. */
  inFlight = 0;
  /** Attempts refused by the concurrency limit since the start. */
  overloaded = 0;

  constructor(key: string, settings: UpstreamSettings) {
    const { budgetWindow, breaker } = settings;
    this.key = key;
    this.settings = settings;
    this.budget = new RetryBudget(budgetWindow);
    this.breaker = breaker === null ? null : new UpstreamBreaker(key, breaker);
    this.capacity = breaker === null || breaker.capacity === 0 ? null : breaker.capacity;
  }
}

/** What a health endpoint may show about one upstream. */
export interface UpstreamSnapshot {
  readonly upstream: string;
  /** The breaker's state, or `disabled` when the upstream's proxies run without one. */
  readonly state: BreakerState | 'disabled';
  readonly inFlight: number;
  readonly capacity: number | null;
  /** Attempts refused by the concurrency limit since the start. */
  readonly overloaded: number;
  /** The breaker's rolling-window counts, or `null` without a breaker. */
  readonly stats: BreakerStats | null;
}

export interface UpstreamSettings {
  /** The upstream's origin: one key, one service. */
  readonly origin: string;
  readonly budgetWindow: number;
  readonly breaker: Readonly<BreakerOptions> | null;
}

export class UpstreamRegistry {
  readonly #upstreams = new Map<string, UpstreamState>();

  /**
   * The state of `key`, created with `settings` on first use. A proxy whose
   * settings differ from those the state was made with would silently run on
   * the first one's: that is a TypeError naming `name`.
   */
  upstream(key: string, settings: UpstreamSettings): UpstreamState {
    let state = this.#upstreams.get(key);
    if (state === undefined) {
      state = new UpstreamState(key, settings);
      this.#upstreams.set(key, state);
      return state;
    }
    const difference = differenceOf(state.settings, settings);
    if (difference !== null) {
      throw new TypeError(
        `Expected \`name\` "${key}" to stand for one upstream with one set of settings in its registry, but it is already used with ${difference}. ` +
          'Proxies that share a name share its breaker, budget and capacity, so they must agree on them; ' +
          'give this proxy another `name`, the same settings, or its own `registry`.',
      );
    }
    return state;
  }

  /** One upstream's breaker state and counts, or `undefined` if no proxy used it yet. */
  get(upstream: string): UpstreamSnapshot | undefined {
    const state = this.#upstreams.get(upstream);
    return state === undefined ? undefined : snapshotOf(state);
  }

  /** Every upstream's breaker state and counts, e.g. for a `/health` route. */
  snapshot(): UpstreamSnapshot[] {
    return [...this.#upstreams.values()].map(snapshotOf);
  }

  /** Stops every breaker's timers and forgets all state. */
  close(): void {
    for (const state of this.#upstreams.values()) state.breaker?.shutdown();
    this.#upstreams.clear();
  }
}

/** What differs between two proxies' settings for one upstream, said for a person; `null` when nothing does. */
function differenceOf(first: UpstreamSettings, second: UpstreamSettings): string | null {
  if (first.origin !== second.origin) return `another target (${first.origin}, not ${second.origin})`;
  if (first.budgetWindow !== second.budgetWindow) return `another \`retry.budget.window\` (${first.budgetWindow}, not ${second.budgetWindow})`;
  if ((first.breaker === null) !== (second.breaker === null)) return first.breaker === null ? '`breaker: false`' : 'a breaker (here `breaker: false`)';
  if (first.breaker !== null && second.breaker !== null) {
    for (const name of Object.keys(first.breaker) as (keyof BreakerOptions)[]) {
      if (first.breaker[name] !== second.breaker[name]) return `another \`breaker.${name}\` (${first.breaker[name]}, not ${second.breaker[name]})`;
    }
  }
  return null;
}

function snapshotOf(state: UpstreamState): UpstreamSnapshot {
  return {
    upstream: state.key,
    state: state.breaker?.state ?? 'disabled',
    inFlight: state.inFlight,
    capacity: state.capacity,
    overloaded: state.overloaded,
    stats: state.breaker?.stats ?? null,
  };
}

/** The registry proxies share when none is passed. */
export const defaultRegistry = new UpstreamRegistry();

// Per-upstream state shared by every proxy to the same upstream, keyed by the
// upstream's name (or its origin): the circuit breaker, the in-flight count
// for the concurrency limit, the retry budget, and the group of hosts with
// their ejections and health. Proxies use the default registry unless given
// one, so two apps — or two tests — in one process can keep theirs apart.
// Proxies that share a key must agree on what the upstream is and on the
// settings of the state they share; the last one to close releases it.

import { DiscoveryRunner, type DiscoverySettings, type DiscoverySnapshot } from './discovery.js';
import { UpstreamBreaker, type BreakerOptions, type BreakerState, type BreakerStats } from './breaker.js';
import { UpstreamGroup, type GroupSettings, type HostSnapshot, type TargetSpec } from './group.js';
import { RetryBudget, type RetryBudgetOptions } from './retry-budget.js';
import { AdaptiveConcurrency, type AdaptiveLimitSnapshot } from '../policy/adaptive-concurrency.js';
import type { AdaptiveConcurrencyOptions } from '../policy/adaptive-limit.js';
import { HedgePolicy, type HedgeOptions, type HedgeSnapshot } from '../policy/hedge.js';

export interface UpstreamSettings {
  /** The hosts as configured: one key, one service. */
  readonly targets: readonly TargetSpec[];
  /** Retry throttling's settings (the defaults when the proxy runs without it: it is then not consulted). */
  readonly budget: Readonly<RetryBudgetOptions>;
  readonly breaker: Readonly<BreakerOptions> | null;
  readonly group: GroupSettings;
  /** The adaptive concurrency limit's settings, or `null` for the fixed `breaker.capacity`. */
  readonly adaptive?: Readonly<AdaptiveConcurrencyOptions> | null;
  /** Hedged requests' settings, or `null` without hedging. */
  readonly hedge?: Readonly<HedgeOptions> | null;
  /** Where the hosts come from when they are discovered (`targets` is then empty until the first list), or `null`. */
  readonly discovery?: DiscoverySettings | null;
}

export class UpstreamState {
  readonly key: string;
  readonly settings: UpstreamSettings;
  readonly budget: RetryBudget;
  readonly breaker: UpstreamBreaker | null;
  readonly group: UpstreamGroup;
  /** The adaptive concurrency limit, when `adaptiveConcurrency` is on. */
  readonly adaptive: AdaptiveConcurrency | null;
  /** Hedging's latency window, budget and counters, when `hedge` is on. */
  readonly hedge: HedgePolicy | null;
  readonly #fixedCapacity: number | null;
  /** Feeds the group from its discovery source, or `null` for a fixed list. */
  readonly discovery: DiscoveryRunner | null;
  /** Attempts in flight now. */
  inFlight = 0;
  /** Attempts refused by the concurrency limit since the start. */
  overloaded = 0;
  /** WebSocket tunnels open now (each also holds an in-flight slot). */
  tunnels = 0;
  /** Proxies using this state. */
  users = 0;

  constructor(key: string, settings: UpstreamSettings) {
    const { breaker } = settings;
    this.key = key;
    this.settings = settings;
    this.budget = new RetryBudget(settings.budget);
    this.breaker = breaker === null ? null : new UpstreamBreaker(key, breaker);
    this.#fixedCapacity = breaker === null || breaker.capacity === 0 ? null : breaker.capacity;
    this.adaptive = settings.adaptive ? new AdaptiveConcurrency(settings.adaptive) : null;
    this.hedge = settings.hedge ? new HedgePolicy(settings.hedge) : null;
    this.group = new UpstreamGroup(key, settings.targets, settings.group);
    this.discovery = settings.discovery ? new DiscoveryRunner(key, settings.discovery, this.group) : null;
    this.discovery?.start();
  }

  /** The most attempts in flight at once (the adaptive limit's value now, when on), or `null` for no limit. */
  get capacity(): number | null {
    return this.adaptive === null ? this.#fixedCapacity : this.adaptive.limit;
  }
}

/** What a health endpoint may show about one upstream. Host URLs are for operators: never send them to clients. */
export interface UpstreamSnapshot {
  readonly upstream: string;
  /** The breaker's state, or `disabled` when the upstream's proxies run without one. */
  readonly state: BreakerState | 'disabled';
  readonly inFlight: number;
  readonly capacity: number | null;
  /** Attempts refused by the concurrency limit since the start. */
  readonly overloaded: number;
  /** WebSocket tunnels open now; each counts in `inFlight` and against `capacity`. */
  readonly tunnels: number;
  /** The breaker's rolling-window counts, or `null` without a breaker. */
  readonly stats: BreakerStats | null;
  /** Each host with its state, in-flight count, ejections, latency estimate and latest failure. */
  readonly hosts: readonly HostSnapshot[];
  /** In panic mode at the latest pick: fewer than half the hosts in rotation, so every host takes traffic. */
  readonly panic: boolean;
  /** Picks made in panic mode since the start. */
  readonly panics: number;
  /** The adaptive concurrency limit (`capacity` is its current value); absent with a fixed or no limit. */
  readonly limit?: AdaptiveLimitSnapshot;
  /** Hedges sent, won and refused by the budget, and the delay now; absent without hedging. */
  readonly hedge?: HedgeSnapshot;
  /** Where the hosts come from and how the latest refreshes went, or `null` for a fixed list. */
  readonly discovery: DiscoverySnapshot | null;
}

export class UpstreamRegistry {
  readonly #upstreams = new Map<string, UpstreamState>();

  /**
   * The state of `key` for one more proxy, created with `settings` on first
   * use. A proxy whose settings differ from those the state was made with
   * would silently run on the first one's: that is a TypeError naming `name`.
   */
  upstream(key: string, settings: UpstreamSettings): UpstreamState {
    let state = this.#upstreams.get(key);
    if (state === undefined) {
      state = new UpstreamState(key, settings);
      this.#upstreams.set(key, state);
    } else {
      const difference = differenceOf(state.settings, settings);
      if (difference !== null) {
        throw new TypeError(
          `Expected \`name\` "${key}" to stand for one upstream with one set of settings in its registry, but it is already used with ${difference}. ` +
            'Proxies that share a name share its breaker, budget, capacity and hosts, so they must agree on them; ' +
            'give this proxy another `name`, the same settings, or its own `registry`.',
        );
      }
    }
    state.users += 1;
    return state;
  }

  /** One proxy stopped using `state`; the last one closes its pools and health checks and forgets it. */
  async release(state: UpstreamState): Promise<void> {
    state.users -= 1;
    if (state.users > 0 || this.#upstreams.get(state.key) !== state) return;
    this.#upstreams.delete(state.key);
    state.discovery?.stop();
    state.breaker?.shutdown();
    state.adaptive?.close();
    await state.group.close();
  }

  /** One upstream's state and counts, or `undefined` if no open proxy uses it. */
  get(upstream: string): UpstreamSnapshot | undefined {
    const state = this.#upstreams.get(upstream);
    return state === undefined ? undefined : snapshotOf(state);
  }

  /** Every upstream's state and counts, e.g. for a `/health` route. */
  snapshot(): UpstreamSnapshot[] {
    return [...this.#upstreams.values()].map(snapshotOf);
  }

  /** Stops every breaker's timers and health check, closes the pools the registry's groups own, and forgets all state. */
  close(): void {
    for (const state of this.#upstreams.values()) {
      state.discovery?.stop();
      state.breaker?.shutdown();
      state.adaptive?.close();
      void state.group.close();
    }
    this.#upstreams.clear();
  }
}

function targetsKey(targets: readonly TargetSpec[]): string {
  return targets.map((target) => (target.weight === 1 ? target.origin : `${target.origin} (weight ${target.weight})`)).join(', ');
}

/** What differs between two proxies' settings for one upstream, said for a person; `null` when nothing does. */
function differenceOf(first: UpstreamSettings, second: UpstreamSettings): string | null {
  const [a, b] = [targetsKey(first.targets), targetsKey(second.targets)];
  if (a !== b) return `another target (${a}, not ${b})`;
  const [d, e] = [first.discovery ?? null, second.discovery ?? null];
  if (d?.identity !== e?.identity) return `another discovery source (${d?.source ?? 'none'}, not ${e?.source ?? 'none'})`;
  for (const name of ['maxTokens', 'tokenRatio'] as const) {
    if (first.budget[name] !== second.budget[name]) return `another \`retry.budget.${name}\` (${first.budget[name]}, not ${second.budget[name]})`;
  }
  if ((first.breaker === null) !== (second.breaker === null)) return first.breaker === null ? '`breaker: false`' : 'a breaker (here `breaker: false`)';
  if (first.breaker !== null && second.breaker !== null) {
    for (const name of Object.keys(first.breaker) as (keyof BreakerOptions)[]) {
      if (first.breaker[name] !== second.breaker[name]) return `another \`breaker.${name}\` (${first.breaker[name]}, not ${second.breaker[name]})`;
    }
  }
  if (JSON.stringify(first.adaptive ?? null) !== JSON.stringify(second.adaptive ?? null)) return 'another `adaptiveConcurrency`';
  if (hedgeKey(first.hedge) !== hedgeKey(second.hedge)) return 'another `hedge`';
  const [g, h] = [first.group, second.group];
  if (g.dispatcher !== h.dispatcher) return 'another `dispatcher`';
  for (const name of ['balance', 'slowStart'] as const) {
    if (g[name] !== h[name]) return `another \`${name}\` (${String(g[name])}, not ${String(h[name])})`;
  }
  for (const name of ['outlierDetection', 'healthCheck'] as const) {
    if (JSON.stringify(g[name]) !== JSON.stringify(h[name])) return `another \`${name}\``;
  }
  return null;
}

function snapshotOf(state: UpstreamState): UpstreamSnapshot {
  const snapshot: UpstreamSnapshot = {
    upstream: state.key,
    state: state.breaker?.state ?? 'disabled',
    inFlight: state.inFlight,
    capacity: state.capacity,
    overloaded: state.overloaded,
    tunnels: state.tunnels,
    stats: state.breaker?.stats ?? null,
    hosts: state.group.snapshot(),
    panic: state.group.panic,
    panics: state.group.panics,
    discovery: state.discovery?.snapshot() ?? null,
  };
  const limited = state.adaptive === null ? snapshot : { ...snapshot, limit: state.adaptive.snapshot() };
  return state.hedge === null ? limited : { ...limited, hedge: state.hedge.snapshot() };
}

/** Hedging's settings as comparable text (its methods are a Set). */
function hedgeKey(hedge: Readonly<HedgeOptions> | null | undefined): string {
  return hedge ? JSON.stringify({ ...hedge, methods: [...hedge.methods] }) : 'null';
}

/** The registry proxies share when none is passed. */
export const defaultRegistry = new UpstreamRegistry();

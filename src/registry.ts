// Per-upstream state shared by every proxy to the same upstream: keyed by the
// upstream's name (or origin). Proxies use the default registry unless given
// one, so two apps — or two tests — in one process can keep theirs apart.

import { RetryBudget } from './retry-budget.js';

export interface UpstreamState {
  readonly key: string;
  readonly budget: RetryBudget;
}

export class UpstreamRegistry {
  readonly #upstreams = new Map<string, UpstreamState>();

  /** The state of `key`, created on first use. `window` sizes a new retry budget. */
  upstream(key: string, budgetWindow: number): UpstreamState {
    let state = this.#upstreams.get(key);
    if (state === undefined) {
      state = { key, budget: new RetryBudget(budgetWindow) };
      this.#upstreams.set(key, state);
    }
    return state;
  }

  /** The keys of every upstream seen so far. */
  keys(): string[] {
    return [...this.#upstreams.keys()];
  }
}

/** The registry proxies share when none is passed. */
export const defaultRegistry = new UpstreamRegistry();

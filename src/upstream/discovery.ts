// Service discovery: a group's hosts taken from a source (DNS, or any
// registry behind a `discover` function) instead of a fixed list. The runner
// feeds each list through the group's `setTargets`, so hosts that stay keep
// their state, removed ones finish what they carry and new ones slow-start.
// A source that fails, ends or answers nothing never empties the group: the
// last good list stays, the failure is reported, and the source is called
// again after a backoff.

import { setTimeout as sleep } from 'node:timers/promises';
import { discoveryChannel } from '../observe/channels.js';
import type { TargetSpec, UpstreamGroup } from './group.js';

/** One host as a discovery source gives it: a URL, or `{ url, weight }` (weight 1 to 1000, default 1). */
export type DiscoveredTarget = string | URL | { url: string | URL; weight?: number };

/**
 * A discovery source: called with a signal that aborts when the last proxy of
 * the upstream closes, it yields the complete list of hosts each time it
 * changes (the same shape `setTargets` takes). Throwing, or ending, is a
 * failure: it is reported, the last good list stays, and the function is
 * called again after `backoff`. An empty or invalid list is reported and
 * ignored.
 */
export type Discover = (signal: AbortSignal) => AsyncIterable<readonly DiscoveredTarget[]>;

/** `target: { discover }`: hosts from any registry (Consul, Kubernetes, …). */
export interface DiscoverTarget {
  discover: Discover;
  /** The scheme every discovered URL has. Default `'http:'`. */
  protocol?: 'http:' | 'https:';
  /** The path prefix every discovered URL has (and every request gets). Default `''` (none). */
  path?: string;
  /** The wait before calling `discover` again after it failed or ended, in ms: from `min`, doubling up to `max`. Default `{ min: 1000, max: 30000 }`. */
  backoff?: { min?: number; max?: number };
}

/** What the registry needs to run a source for an upstream. */
export interface DiscoverySettings {
  /** The source, for people: `dns A orders.internal:8080`, `discover`. */
  readonly source: string;
  /** Two proxies of one upstream must share this (the DNS settings, or the `discover` function itself). */
  readonly identity: unknown;
  readonly discover: Discover;
  readonly backoff: { readonly min: number; readonly max: number };
  /** Validates one list as `setTargets` does (same scheme and path prefix); throws a TypeError on a bad one. */
  readonly toTargets: (list: readonly DiscoveredTarget[]) => TargetSpec[];
}

/**
 * What `hooks.onDiscovery` and the `resilient-proxy:discovery` channel are
 * told: `updated` when a list changed the hosts, `failed` on every failed
 * refresh (the hosts stay as they were), `recovered` when a refresh succeeds
 * after failures without changing the hosts. `error` is for operators only.
 */
export interface DiscoveryEvent {
  readonly upstream: string;
  readonly source: string;
  readonly kind: 'updated' | 'failed' | 'recovered';
  /** Hosts in the group after the event. */
  readonly hosts: number;
  readonly error: unknown;
}

/** `registry.snapshot()[n].discovery`: where the hosts come from and how the latest refreshes went. */
export interface DiscoverySnapshot {
  readonly source: string;
  /** When a refresh last gave a good list, in ms since the epoch; `null` before the first. */
  readonly lastRefresh: number | null;
  /** The latest failure (kept after a recovery); `null` if none. */
  readonly lastError: { readonly message: string; readonly at: number } | null;
  /** Failed refreshes in a row; `0` when the latest one succeeded. */
  readonly failures: number;
}

export class DiscoveryRunner {
  readonly #controller = new AbortController();
  readonly #listeners = new Set<(event: DiscoveryEvent) => void>();
  #lastRefresh: number | null = null;
  #lastError: { message: string; at: number } | null = null;
  #failures = 0;

  constructor(
    readonly key: string,
    readonly settings: DiscoverySettings,
    readonly group: UpstreamGroup,
  ) {}

  start(): void {
    void this.#run();
  }

  /** Stops the source: its signal aborts, its iterator is returned, no timer is left. */
  stop(): void {
    this.#controller.abort();
  }

  snapshot(): DiscoverySnapshot {
    return { source: this.settings.source, lastRefresh: this.#lastRefresh, lastError: this.#lastError, failures: this.#failures };
  }

  onEvent(listener: (event: DiscoveryEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async #run(): Promise<void> {
    const { signal } = this.#controller;
    // A function, not the property: it changes while the loop awaits.
    const stopped = (): boolean => signal.aborted;
    const { backoff } = this.settings;
    let delay = backoff.min;
    while (!stopped()) {
      try {
        for await (const list of this.settings.discover(signal)) {
          if (stopped()) return;
          if (this.#apply(list)) delay = backoff.min;
        }
        if (!stopped()) this.#failed(new Error('The discovery source ended.'));
      } catch (error) {
        if (!stopped()) this.#failed(error);
      }
      try {
        await sleep(delay, undefined, { signal, ref: false });
      } catch {
        return;
      }
      delay = Math.min(delay * 2, backoff.max);
    }
  }

  /** Puts one list in place; `false` (reported) when it is empty or invalid. */
  #apply(list: readonly DiscoveredTarget[]): boolean {
    let targets: TargetSpec[];
    try {
      if (!Array.isArray(list) || list.length === 0) throw new Error('The discovery source answered with no host; the hosts stay as they were.');
      targets = this.settings.toTargets(list);
    } catch (error) {
      this.#failed(error);
      return false;
    }
    const before = membership(this.group.hosts);
    this.group.setTargets(targets);
    const changed = membership(this.group.hosts) !== before;
    const recovered = this.#failures > 0;
    this.#failures = 0;
    this.#lastRefresh = Date.now();
    if (changed) this.#emit('updated', null);
    else if (recovered) this.#emit('recovered', null);
    return true;
  }

  #failed(error: unknown): void {
    this.#failures += 1;
    this.#lastError = { message: error instanceof Error ? error.message : String(error), at: Date.now() };
    this.#emit('failed', error);
  }

  #emit(kind: DiscoveryEvent['kind'], error: unknown): void {
    if (this.#listeners.size === 0 && !discoveryChannel.hasSubscribers) return;
    const event: DiscoveryEvent = { upstream: this.key, source: this.settings.source, kind, hosts: this.group.hosts.length, error };
    if (discoveryChannel.hasSubscribers) discoveryChannel.publish(event);
    for (const listener of this.#listeners) listener(event);
  }
}

function membership(hosts: readonly { origin: string; weight: number }[]): string {
  // Sorted: the same hosts in another order are no change.
  return hosts
    .map((host) => `${host.origin} ${host.weight}`)
    .sort()
    .join(',');
}

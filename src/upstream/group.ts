// The hosts of one service: which one takes the next attempt, which are out
// of rotation (ejected by passive outlier detection, or unhealthy by active
// checks), and the membership, which may change at run time. A group of one
// host behaves exactly like a single target: it is always picked.

import type { Dispatcher } from 'undici';
import { hostState } from '../observe/channels.js';
import { latencyOf, pick, recordLatency, type Balance, type BalancedHost } from './balancer.js';
import { HealthChecker, type CheckVerdict, type HealthCheckOptions } from './health-check.js';
import { ejectionOver, ejectionRoom, outlierState, recordFailure, recordSuccess, returnToService, type OutlierOptions, type OutlierState } from './outlier.js';

export type HostState = 'healthy' | 'ejected' | 'unhealthy';

/** One host as configured: its origin and weight. */
export interface TargetSpec {
  readonly origin: string;
  readonly weight: number;
}

export interface GroupSettings {
  readonly balance: Balance;
  readonly outlierDetection: Readonly<OutlierOptions> | null;
  readonly healthCheck: Readonly<HealthCheckOptions> | null;
  /** Ramp-up of a host that joins or returns, in ms (`0`: none). */
  readonly slowStart: number;
  /** The target's path prefix, shared by every host, for display. */
  readonly basePath: string;
  /** A dispatcher the user passed (shared by every host), or `null` for a pool per host. */
  readonly dispatcher: Dispatcher | null;
  /** Builds the pool of one host when no dispatcher was passed. */
  readonly createPool: (origin: string) => Dispatcher;
}

/** What `hooks.onHostStateChange` is told. The host URL is for operators, never for clients. */
export interface HostStateChange {
  readonly upstream: string;
  readonly host: string;
  readonly from: HostState;
  readonly to: HostState;
  readonly reason: 'consecutive-failures' | 'ejection-ended' | 'health-check-failed' | 'health-check-passed';
}

/** One host in `registry.snapshot()`. */
export interface HostSnapshot {
  readonly url: string;
  readonly weight: number;
  readonly state: HostState;
  readonly inFlight: number;
  /** Ejections since the host joined. */
  readonly ejections: number;
}

export class Host implements BalancedHost {
  active = 0;
  current = 0;
  latency = 0;
  latencyAt = 0;
  warmingSince: number;
  ejected = false;
  /** The active health checks' verdict (always `true` without them). */
  checkedHealthy = true;
  removed = false;
  readonly outlier: OutlierState;
  checker: HealthChecker | null = null;
  /** `host[:port]`, for `Host` with `changeOrigin`. */
  readonly authority: string;

  constructor(
    readonly origin: string,
    readonly url: string,
    readonly weight: number,
    readonly dispatcher: Dispatcher,
    readonly ownsDispatcher: boolean,
    now: number,
    warming: boolean,
  ) {
    this.outlier = outlierState(now);
    this.authority = new URL(origin).host;
    this.warmingSince = warming ? now : Number.NEGATIVE_INFINITY;
  }

  get state(): HostState {
    if (this.ejected) return 'ejected';
    return this.checkedHealthy ? 'healthy' : 'unhealthy';
  }

  get eligible(): boolean {
    return !this.ejected && this.checkedHealthy;
  }
}

/** What a failed attempt adds to a host's latency estimate, in ms (it also doubles). */
const FAILURE_PENALTY_MS = 50;

/** Candidate filters, set before a pick so that the pick allocates nothing. */
const ELIGIBLE = 0;
const ANY = 1;

export class UpstreamGroup {
  #hosts: Host[] = [];
  #origins: ReadonlySet<string> | null = null;
  /** Picks made in panic mode (fewer than half the hosts eligible: all of them used). */
  panics = 0;
  readonly #listeners = new Set<(change: HostStateChange) => void>();
  #mode = ELIGIBLE;
  #exclude: readonly Host[] | null = null;
  readonly #isCandidate = (host: Host): boolean =>
    (this.#mode === ANY || host.eligible) && (this.#exclude === null || !this.#exclude.includes(host));

  constructor(
    readonly key: string,
    targets: readonly TargetSpec[],
    readonly settings: GroupSettings,
    readonly now: () => number = () => performance.now(),
    readonly random: () => number = Math.random,
  ) {
    this.#hosts = targets.map((target) => this.#host(target, false));
  }

  get hosts(): readonly Host[] {
    return this.#hosts;
  }

  /** The origins of the hosts, for recognising redirects to them. */
  get origins(): ReadonlySet<string> {
    this.#origins ??= new Set(this.#hosts.map((host) => host.origin));
    return this.#origins;
  }

  #host(target: TargetSpec, warming: boolean): Host {
    const { dispatcher, basePath } = this.settings;
    const host = new Host(
      target.origin,
      target.origin + basePath,
      target.weight,
      dispatcher ?? this.settings.createPool(target.origin),
      dispatcher === null,
      this.now(),
      warming,
    );
    const check = this.settings.healthCheck;
    if (check !== null) {
      host.checker = new HealthChecker(check, host.dispatcher, host.origin, (passed, verdict) => {
        this.#onCheck(host, passed, verdict);
      });
    }
    return host;
  }

  /**
   * The host for the next attempt, avoiding `tried` while another candidate
   * exists. Hosts out of rotation are skipped unless fewer than half the group
   * is eligible (panic: all hosts take traffic, so detection that over-fired
   * never refuses requests by itself).
   */
  pick(tried: readonly Host[] | null): Host {
    const hosts = this.#hosts;
    if (hosts.length === 1) return hosts[0] as Host;
    const now = this.now();
    let eligible = 0;
    for (const host of hosts) {
      if (host.ejected && ejectionOver(host.outlier, now)) {
        host.ejected = false;
        host.warmingSince = now;
        this.#emitFrom(host, 'ejected', 'ejection-ended');
      }
      if (host.eligible) eligible += 1;
    }
    this.#mode = eligible * 2 < hosts.length ? ANY : ELIGIBLE;
    if (this.#mode === ANY) this.panics += 1;
    this.#exclude = tried;
    let count = this.#count();
    if (count === 0) {
      this.#exclude = null;
      count = this.#count();
    }
    const chosen = pick(hosts, this.#isCandidate, count, this.settings.balance, now, this.settings.slowStart, this.random);
    this.#exclude = null;
    return chosen;
  }

  #count(): number {
    let count = 0;
    for (const host of this.#hosts) if (this.#isCandidate(host)) count += 1;
    return count;
  }

  /** Whether a host the request has not tried could take another attempt. */
  hasUntried(tried: readonly Host[]): boolean {
    let eligible = 0;
    for (const host of this.#hosts) if (host.eligible) eligible += 1;
    const panic = eligible * 2 < this.#hosts.length;
    return this.#hosts.some((host) => (panic || host.eligible) && !tried.includes(host));
  }

  /** An attempt on `host` ended: `failure` counts toward its ejection, `success` resets that count, `neutral` neither. */
  record(host: Host, result: 'success' | 'failure' | 'neutral', latency: number | null): void {
    const now = this.now();
    // A failure counts as slow, whatever its time: a host that fails fast
    // (a quick 503, a refused connection) must not look like the fastest and
    // draw the traffic of a latency-aware balancer to itself.
    if (result === 'failure') recordLatency(host, Math.max(latency ?? 0, 2 * latencyOf(host, now) + FAILURE_PENALTY_MS), now);
    else if (latency !== null) recordLatency(host, latency, now);
    const detection = this.settings.outlierDetection;
    if (detection === null || host.removed || host.ejected || result === 'neutral' || this.#hosts.length < 2) return;
    if (result === 'success') {
      recordSuccess(host.outlier, now, detection);
      return;
    }
    let ejected = 0;
    for (const other of this.#hosts) if (other.ejected) ejected += 1;
    const room = ejected < ejectionRoom(this.#hosts.length, detection.maxEjectionPercent);
    if (recordFailure(host.outlier, now, detection, room, this.random) > 0) {
      const from = host.state;
      host.ejected = true;
      this.#emitFrom(host, from, 'consecutive-failures');
    }
  }

  #onCheck(host: Host, passed: boolean, verdict: CheckVerdict): void {
    if (host.removed) return;
    const from = host.state;
    if (verdict !== null) host.checkedHealthy = verdict === 'healthy';
    // Any pass of a host its checks find healthy brings it back, whatever
    // ejected it (Envoy's default): not only the pass that ends an unhealthy
    // spell, or a host ejected by outlier detection whose checks never failed
    // would wait out its whole ejection.
    if (passed && host.checkedHealthy && host.ejected) {
      host.ejected = false;
      returnToService(host.outlier, this.now());
    }
    if (host.state === from) return;
    if (host.eligible) host.warmingSince = this.now();
    this.#emitFrom(host, from, passed ? 'health-check-passed' : 'health-check-failed');
  }

  /** Replaces the membership. Hosts that stay keep their state; removed ones finish what is in flight. */
  setTargets(targets: readonly TargetSpec[]): void {
    const kept = new Map(this.#hosts.map((host) => [`${host.origin} ${host.weight}`, host]));
    const next: Host[] = [];
    for (const target of targets) {
      const key = `${target.origin} ${target.weight}`;
      const host = kept.get(key);
      if (host === undefined) next.push(this.#host(target, true));
      else {
        next.push(host);
        kept.delete(key);
      }
    }
    this.#hosts = next;
    this.#origins = null;
    for (const gone of kept.values()) void this.#retire(gone);
  }

  async #retire(host: Host): Promise<void> {
    if (host.removed) return;
    host.removed = true;
    host.checker?.stop();
    // close() lets requests in flight finish.
    if (host.ownsDispatcher) await host.dispatcher.close();
  }

  snapshot(): HostSnapshot[] {
    const now = this.now();
    return this.#hosts.map((host) => {
      if (host.ejected && ejectionOver(host.outlier, now)) {
        host.ejected = false;
        host.warmingSince = now;
        this.#emitFrom(host, 'ejected', 'ejection-ended');
      }
      return { url: host.url, weight: host.weight, state: host.state, inFlight: host.active, ejections: host.outlier.ejections };
    });
  }

  onStateChange(listener: (change: HostStateChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emitFrom(host: Host, from: HostState, reason: HostStateChange['reason']): void {
    const to = host.state;
    if (from === to || (this.#listeners.size === 0 && !hostState.hasSubscribers)) return;
    const change: HostStateChange = { upstream: this.key, host: host.url, from, to, reason };
    if (hostState.hasSubscribers) hostState.publish(change);
    for (const listener of this.#listeners) listener(change);
  }

  /** Stops health checks and closes the pools the group owns. */
  async close(): Promise<void> {
    await Promise.all(this.#hosts.map((host) => this.#retire(host)));
  }
}

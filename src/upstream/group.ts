// The hosts of one service: which one takes the next attempt, which are out
// of rotation (ejected by passive outlier detection, or unhealthy by active
// checks), and the membership, which may change at run time. A group of one
// host behaves exactly like a single target: it is always picked.

import type { Dispatcher } from 'undici';
import type { FailureCode } from '../contract/failures.js';
import { groupPanic, hostState } from '../observe/channels.js';
import { latencyOf, pick, recordFailureLatency, recordLatency, type Balance, type BalancedHost } from './balancer.js';
import { HealthChecker, type CheckVerdict, type HealthCheckOptions } from './health-check.js';
import { backOff, ejectionOver, ejectionRoom, outlierState, recordFailure, recordSuccess, returnToService, type OutlierOptions, type OutlierState } from './outlier.js';

/**
 * - `healthy`: in rotation.
 * - `failing`: in rotation although its failures in a row reached
 *   `outlierDetection.consecutiveFailures`, because `maxEjectionPercent`
 *   leaves no room to eject it.
 * - `ejected`: out of rotation until `ejectedUntil` (outlier detection, or its own `Retry-After`).
 * - `unhealthy`: out of rotation until its active health checks pass.
 */
export type HostState = 'healthy' | 'failing' | 'ejected' | 'unhealthy';

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

/** What `hooks.onHostStateChange` is told. The host is for operators, never for clients. */
export interface HostStateChange {
  readonly upstream: string;
  /** The host's origin (`http://10.0.0.7:8080`): the id `onRetry.target`, `onFailure.target` and the `resilient_proxy.host` metric attribute use too. */
  readonly host: string;
  readonly from: HostState;
  readonly to: HostState;
  readonly reason:
    | 'consecutive-failures'
    | 'retry-after'
    | 'ejection-limit'
    | 'request-succeeded'
    | 'ejection-ended'
    | 'health-check-failed'
    | 'health-check-passed';
}

/** What `hooks.onPanic` is told when a group enters or leaves panic mode. */
export interface PanicChange {
  readonly upstream: string;
  /** `true`: fewer than half the hosts are in rotation, so every host takes traffic; `false`: back to hosts in rotation only. */
  readonly panic: boolean;
  /** Hosts in rotation now. */
  readonly eligible: number;
  readonly hosts: number;
}

/** A host's latest upstream failure. */
export interface LastFailure {
  readonly code: FailureCode;
  /** When, in ms since the epoch. */
  readonly at: number;
}

/** One host in `registry.snapshot()`. */
export interface HostSnapshot {
  /** The host's origin: its id in hooks, events and metrics. */
  readonly origin: string;
  /** The origin and the target's path: where its requests go. */
  readonly url: string;
  readonly weight: number;
  readonly state: HostState;
  readonly inFlight: number;
  /** Ejections by outlier detection since the host joined. */
  readonly ejections: number;
  /** The latency estimate the `peak-ewma` balancer ranks the host by, in ms; `null` when it has none (no answer in the last second). */
  readonly latencyMs: number | null;
  /** Upstream failures in a row. */
  readonly consecutiveFailures: number;
  readonly lastFailure: LastFailure | null;
  /** When an ejection ends, in ms since the epoch; `null` when not ejected. */
  readonly ejectedUntil: number | null;
}

export class Host implements BalancedHost {
  active = 0;
  current = 0;
  latency = 0;
  latencyAt = 0;
  failed = false;
  warmingSince: number;
  ejected = false;
  /** In rotation with failures in a row past the threshold: `maxEjectionPercent` left no room. */
  failing = false;
  /** Back in rotation and not tried since: the next pick sends it one request, whatever the balancer and slow start. */
  probe = false;
  /** Upstream failures in a row, counted whether or not outlier detection is on (retry throttling reads it). */
  streak = 0;
  /** The active health checks' verdict (always `true` without them). */
  checkedHealthy = true;
  lastFailure: FailureCode | null = null;
  /** When, on the group's clock. */
  lastFailureAt = 0;
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
    if (!this.checkedHealthy) return 'unhealthy';
    return this.failing ? 'failing' : 'healthy';
  }

  get eligible(): boolean {
    return !this.ejected && this.checkedHealthy;
  }

  /** Out only because it asked for time (`Retry-After`): not a verdict, so it does not count toward panic or `maxEjectionPercent`. */
  get backingOff(): boolean {
    return this.ejected && this.outlier.backedOff && this.checkedHealthy;
  }
}

/**
 * The longest a host backs off for its own `Retry-After`, in ms: a hint about
 * the next few seconds, not a verdict (a longer wish is still passed on to the
 * client when no other host can take the request).
 */
export const RETRY_AFTER_MAX_MS = 10_000;

/** What `record` learns from a failed attempt. */
export interface AttemptFailure {
  readonly code: FailureCode;
  /** The host's `Retry-After`, in ms, when it answered with one. */
  readonly retryAfter: number | null;
}

/** Candidate filters, set before a pick so that the pick allocates nothing. */
const ELIGIBLE = 0;
const ANY = 1;

export class UpstreamGroup {
  #hosts: Host[] = [];
  #origins: ReadonlySet<string> | null = null;
  /** Picks made in panic mode (fewer than half the hosts eligible: all of them used). */
  panics = 0;
  /** In panic mode now. */
  panic = false;
  readonly #listeners = new Set<(change: HostStateChange) => void>();
  readonly #panicListeners = new Set<(change: PanicChange) => void>();
  #mode = ELIGIBLE;
  #exclude: readonly Host[] | null = null;
  readonly #isCandidate = (host: Host): boolean =>
    (this.#mode === ANY || host.eligible) && (this.#exclude === null || !this.#exclude.includes(host));

  /** Wall-clock ms at the group clock's 0. */
  readonly #epoch: number;

  constructor(
    readonly key: string,
    targets: readonly TargetSpec[],
    readonly settings: GroupSettings,
    readonly now: () => number = () => performance.now(),
    readonly random: () => number = Math.random,
  ) {
    this.#epoch = Date.now() - now();
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
    // The common case, every host in rotation and none to probe on a first
    // attempt, in one pass: no ejection to end, no panic, every host a candidate.
    if (tried === null && !this.panic && this.#allInRotation()) {
      this.#mode = ELIGIBLE;
      return pick(hosts, this.#isCandidate, hosts.length, this.settings.balance, now, this.settings.slowStart, this.random, null);
    }
    for (const host of hosts) if (host.ejected) this.#endEjection(host, now);
    const panic = this.#inPanic();
    if (panic !== this.panic) this.#panicChanged(panic);
    this.#mode = panic ? ANY : ELIGIBLE;
    if (panic) this.panics += 1;
    this.#exclude = tried;
    let count = this.#count();
    if (count === 0) {
      this.#exclude = null;
      count = this.#count();
    }
    const chosen = pick(hosts, this.#isCandidate, count, this.settings.balance, now, this.settings.slowStart, this.random, this.#probe());
    this.#exclude = null;
    return chosen;
  }

  /** Every host in rotation (not ejected, passing its checks), none waiting for its probe. */
  #allInRotation(): boolean {
    for (const host of this.#hosts) if (host.ejected || !host.checkedHealthy || host.probe) return false;
    return true;
  }

  /**
   * A host just back in rotation, idle, gets the next attempt: one request
   * decides (Finagle's and Linkerd's probe), instead of waiting for its
   * slow-start share to win a draw. A failure sends it out again (probation).
   */
  #probe(): Host | null {
    for (const host of this.#hosts) {
      if (!host.probe || host.active > 0 || !this.#isCandidate(host)) continue;
      host.probe = false;
      return host;
    }
    return null;
  }

  #count(): number {
    let count = 0;
    for (const host of this.#hosts) if (this.#isCandidate(host)) count += 1;
    return count;
  }

  /** Whether a host the request has not tried could take another attempt. */
  hasUntried(tried: readonly Host[]): boolean {
    const panic = this.#inPanic();
    return this.#hosts.some((host) => (panic || host.eligible) && !tried.includes(host));
  }

  /**
   * Whether a healthy host the request has not tried could take another
   * attempt: in rotation, not failing, and its latest attempt did not fail
   * (in a total outage every host soon has a failure in its streak).
   */
  hasHealthyUntried(tried: readonly Host[]): boolean {
    return this.#hosts.some((host) => host.eligible && !host.failing && host.streak === 0 && !tried.includes(host));
  }

  /**
   * Panic: fewer than half the hosts stand (in rotation, or out only at their
   * own request), or none is in rotation. A host backing off for its
   * `Retry-After` is not a verdict of ours that may have over-fired, so it
   * does not push the group into sending traffic to the hosts that failed.
   */
  #inPanic(): boolean {
    let eligible = 0;
    let standing = 0;
    for (const host of this.#hosts) {
      if (host.eligible) eligible += 1;
      else if (!host.backingOff) continue;
      standing += 1;
    }
    return eligible === 0 || standing * 2 < this.#hosts.length;
  }

  /**
   * A hedged request's losing attempt on `host`, cancelled after waiting `ms`
   * for its head: neither a success nor a failure, but a lower bound of its
   * latency, so the balancer still learns that the host was slow.
   */
  recordWait(host: Host, ms: number): void {
    const now = this.now();
    const estimate = latencyOf(host, now);
    if (estimate === null || ms > estimate) recordLatency(host, ms, now);
  }

  /**
   * An attempt on `host` ended: a `failure` counts toward its ejection (and
   * its `Retry-After` backs it off at once), a `success` resets that count,
   * `neutral` (the client left) neither.
   */
  record(host: Host, result: 'success' | 'failure' | 'neutral', latency: number | null, failure: AttemptFailure | null = null): void {
    if (result === 'neutral') return;
    const now = this.now();
    host.streak = result === 'success' ? 0 : host.streak + 1;
    if (result === 'success') {
      if (latency !== null) recordLatency(host, latency, now);
    } else {
      // Neither the fastest nor the slowest: keeping a failing host out is
      // outlier detection's job, not the cost's (see recordFailureLatency).
      recordFailureLatency(host, latency, this.#typicalLatency(host, now), now);
      if (failure !== null) {
        host.lastFailure = failure.code;
        host.lastFailureAt = now;
      }
    }
    const detection = this.settings.outlierDetection;
    if (detection === null || host.removed || host.ejected || this.#hosts.length < 2) return;
    if (result === 'success') {
      recordSuccess(host.outlier, now, detection);
      if (host.failing) {
        host.failing = false;
        this.#emitFrom(host, 'failing', 'request-succeeded');
      }
      return;
    }
    const from = host.state;
    const room = this.#ejectionRoom(detection);
    const retryAfter = failure?.retryAfter ?? null;
    if (recordFailure(host.outlier, now, detection, room, this.random) > 0) {
      host.ejected = true;
      host.failing = false;
      this.#emitFrom(host, from, 'consecutive-failures');
    } else if (retryAfter !== null && this.#backOffRoom(host, detection) && backOff(host.outlier, now, Math.min(retryAfter, RETRY_AFTER_MAX_MS), detection) > 0) {
      host.ejected = true;
      host.failing = false;
      this.#emitFrom(host, from, 'retry-after');
    } else if (!host.failing && host.outlier.consecutive >= detection.consecutiveFailures) {
      host.failing = true;
      this.#emitFrom(host, from, 'ejection-limit');
    }
  }

  /**
   * Whether `host` may back off for its `Retry-After`: one request's answer
   * must not take the group down. Hosts backing off have a room of their own
   * (`maxEjectionPercent` of the group, apart from ejections), and the last
   * host in rotation that is not failing never backs off.
   */
  #backOffRoom(host: Host, detection: Readonly<OutlierOptions>): boolean {
    let backingOff = 0;
    let others = 0;
    for (const other of this.#hosts) {
      if (other.backingOff) backingOff += 1;
      else if (other !== host && other.eligible && !other.failing) others += 1;
    }
    return others > 0 && backingOff < ejectionRoom(this.#hosts.length, detection.maxEjectionPercent);
  }

  /** Whether `maxEjectionPercent` leaves room for one more ejection by detection (hosts backing off at their own request do not count). */
  #ejectionRoom(detection: Readonly<OutlierOptions>): boolean {
    let ejected = 0;
    for (const other of this.#hosts) if (other.ejected && !other.backingOff) ejected += 1;
    return ejected < ejectionRoom(this.#hosts.length, detection.maxEjectionPercent);
  }

  /** The mean estimate of the other hosts in rotation that have one, or 0. */
  #typicalLatency(except: Host, now: number): number {
    let sum = 0;
    let known = 0;
    for (const host of this.#hosts) {
      if (host === except || !host.eligible) continue;
      const latency = latencyOf(host, now);
      if (latency === null) continue;
      sum += latency;
      known += 1;
    }
    return known === 0 ? 0 : sum / known;
  }

  /** Ends `host`'s ejection if its time is up. */
  #endEjection(host: Host, now: number): void {
    if (!ejectionOver(host.outlier, now)) return;
    host.ejected = false;
    this.#backInRotation(host, now);
    this.#emitFrom(host, 'ejected', 'ejection-ended');
  }

  /**
   * A host back in rotation starts afresh: it is probed by the next attempt,
   * its old latency estimate says nothing about it now, and slow start ramps
   * its share after the probe.
   */
  #backInRotation(host: Host, now: number): void {
    host.warmingSince = now;
    host.latencyAt = 0;
    host.probe = true;
    host.failed = false;
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
    if (host.eligible) this.#backInRotation(host, this.now());
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
    // Times for operators are wall-clock; the group's own clock is monotonic,
    // and one offset taken at creation keeps a time the same from read to read.
    const wall = (at: number): number => Math.round(this.#epoch + at);
    return this.#hosts.map((host) => {
      if (host.ejected) this.#endEjection(host, now);
      const latency = latencyOf(host, now);
      return {
        origin: host.origin,
        url: host.url,
        weight: host.weight,
        state: host.state,
        inFlight: host.active,
        ejections: host.outlier.ejections,
        latencyMs: latency === null ? null : Math.round(latency * 1000) / 1000,
        consecutiveFailures: host.outlier.consecutive,
        lastFailure: host.lastFailure === null ? null : { code: host.lastFailure, at: wall(host.lastFailureAt) },
        ejectedUntil: host.ejected && host.outlier.ejectedUntil !== 0 ? wall(host.outlier.ejectedUntil) : null,
      };
    });
  }

  onStateChange(listener: (change: HostStateChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  onPanic(listener: (change: PanicChange) => void): () => void {
    this.#panicListeners.add(listener);
    return () => this.#panicListeners.delete(listener);
  }

  #panicChanged(panic: boolean): void {
    this.panic = panic;
    if (this.#panicListeners.size === 0 && !groupPanic.hasSubscribers) return;
    let eligible = 0;
    for (const host of this.#hosts) if (host.eligible) eligible += 1;
    const change: PanicChange = { upstream: this.key, panic, eligible, hosts: this.#hosts.length };
    if (groupPanic.hasSubscribers) groupPanic.publish(change);
    for (const listener of this.#panicListeners) listener(change);
  }

  #emitFrom(host: Host, from: HostState, reason: HostStateChange['reason']): void {
    const to = host.state;
    if (from === to || (this.#listeners.size === 0 && !hostState.hasSubscribers)) return;
    const change: HostStateChange = { upstream: this.key, host: host.origin, from, to, reason };
    if (hostState.hasSubscribers) hostState.publish(change);
    for (const listener of this.#listeners) listener(change);
  }

  /** Stops health checks and closes the pools the group owns. */
  async close(): Promise<void> {
    await Promise.all(this.#hosts.map((host) => this.#retire(host)));
  }
}

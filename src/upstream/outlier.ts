// Passive outlier detection for one host, after Envoy's consecutive-failure
// detector: N upstream failures in a row eject the host for base × n (n the
// host's ejection count, capped, jittered); a host that stays healthy lets n
// decay; a host just back that fails at once goes out again, for longer. Pure:
// time and randomness come from the caller.

export interface OutlierOptions {
  /** Upstream failures in a row that eject a host. Default `5` (Envoy's `consecutive_5xx`). */
  consecutiveFailures: number;
  /** The first ejection's length, in ms; the n-th lasts n times as long. Default `30000` (Envoy's). */
  baseEjectionTime: number;
  /** The longest ejection, in ms. Default `300000` (Envoy's). */
  maxEjectionTime: number;
  /**
   * The most hosts of the group ejected at once, in percent; one host of a
   * group of two or more may always be. Default `50`.
   */
  maxEjectionPercent: number;
}

/** Up to this share of an ejection is added at random, so ejected hosts do not all return at once. */
const JITTER = 0.1;

export interface OutlierState {
  /** Upstream failures in a row. */
  consecutive: number;
  /** The ejection multiplier n: ejections not yet forgiven. */
  multiplier: number;
  /** Ejections since the host joined, for the snapshot. */
  ejections: number;
  /** When the current ejection ends (ms), or 0 when not ejected. */
  ejectedUntil: number;
  /** Since when the host has been in service without a new ejection (ms): the decay counts from here. */
  since: number;
  /** Back from an ejection and not yet answered well: one failure sends it out again. */
  probation: boolean;
  /** The current ejection is the host's own `Retry-After`, not a verdict: it ends without probation. */
  backedOff: boolean;
}

export function outlierState(now: number): OutlierState {
  return { consecutive: 0, multiplier: 0, ejections: 0, ejectedUntil: 0, since: now, probation: false, backedOff: false };
}

/** One step of the multiplier is forgiven per `baseEjectionTime` in service. */
function decay(state: OutlierState, now: number, options: OutlierOptions): void {
  if (state.multiplier === 0 || state.ejectedUntil !== 0) return;
  const steps = Math.floor((now - state.since) / options.baseEjectionTime);
  if (steps <= 0) return;
  state.multiplier = Math.max(0, state.multiplier - steps);
  state.since += steps * options.baseEjectionTime;
}

export function recordSuccess(state: OutlierState, now: number, options: OutlierOptions): void {
  state.consecutive = 0;
  state.probation = false;
  decay(state, now, options);
}

/**
 * Counts one upstream failure. Returns the ejection's length in ms when the
 * host must be ejected now, else 0. `mayEject` says whether the group's
 * `maxEjectionPercent` leaves room.
 */
export function recordFailure(state: OutlierState, now: number, options: OutlierOptions, mayEject: boolean, random: () => number): number {
  decay(state, now, options);
  state.consecutive += 1;
  if (!mayEject || (!state.probation && state.consecutive < options.consecutiveFailures)) return 0;
  state.multiplier += 1;
  state.ejections += 1;
  state.consecutive = 0;
  state.probation = false;
  state.backedOff = false;
  const length = Math.min(options.baseEjectionTime * state.multiplier, Math.max(options.baseEjectionTime, options.maxEjectionTime));
  const jittered = Math.round(length * (1 + JITTER * random()));
  state.ejectedUntil = now + jittered;
  return jittered;
}

/**
 * The host asked for time (a failure status with `Retry-After`): it is out
 * for `ms` (capped at `maxEjectionTime`), without a verdict on its health —
 * no multiplier, no probation after; the group decides whether there is
 * room for it. Returns the length, or 0 when the host is already out for longer.
 */
export function backOff(state: OutlierState, now: number, ms: number, options: OutlierOptions): number {
  const length = Math.min(ms, options.maxEjectionTime);
  if (length <= 0 || (state.ejectedUntil !== 0 && state.ejectedUntil >= now + length)) return 0;
  // The failures in a row keep counting through a back-off: a host that
  // answers every request with `Retry-After` is ejected like any other.
  // Already out by a verdict: that verdict's probation still applies after.
  if (state.ejectedUntil === 0) state.backedOff = true;
  state.ejectedUntil = now + length;
  return length;
}

/** Whether an ejected host's time is up; if so it is back (on probation after an ejection by detection). */
export function ejectionOver(state: OutlierState, now: number): boolean {
  if (state.ejectedUntil === 0 || now < state.ejectedUntil) return false;
  returnToService(state, now);
  return true;
}

/** The host is back (its ejection ran out, or a health check vouched for it). */
export function returnToService(state: OutlierState, now: number): void {
  state.ejectedUntil = 0;
  // After a back-off the count goes on: its failures were not a verdict yet.
  if (!state.backedOff) state.consecutive = 0;
  state.since = now;
  state.probation = !state.backedOff;
  state.backedOff = false;
}

/** How many hosts of `size` may be ejected at once. */
export function ejectionRoom(size: number, maxEjectionPercent: number): number {
  if (size < 2) return 0;
  return Math.max(1, Math.floor((size * maxEjectionPercent) / 100));
}

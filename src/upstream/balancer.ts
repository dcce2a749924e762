// Picks the host for one attempt. Pure: hosts carry their own counters, time
// and randomness come from the caller, and a pick allocates nothing.
//
// - least-request: two random choices, the lower `(active + 1) / weight` wins
//   (Envoy's and Finagle's "power of two choices").
// - round-robin: smooth weighted round-robin (nginx's), each host in turn in
//   proportion to its weight.
// - peak-ewma: two random choices, the lower `latency × (active + 1) / weight`
//   wins, where latency is a peak-sensitive moving average of the time to
//   response headers (Finagle's and Linkerd's latency-aware balancing).
//
// Only hosts in rotation are candidates (the group filters them; in panic
// mode, as in Envoy, every host is), so cost ranks healthy hosts only and a
// failure never has to be priced in to keep a bad host out: a host whose
// latest attempt failed is priced as its rival, so it keeps its draws and
// outlier detection sees its failures. Slow start ramps a host's *share*, not its cost: a warming
// host that wins a draw keeps it with probability `max(0.1, age / slowStart)`,
// so it gets traffic at any concurrency, one request at a time included
// (a ramped weight in the cost would lose every draw when nothing is in flight).
// Under peak-ewma, a warming host with no estimate is probed at once, one
// attempt at a time; the ramp starts from its answer.
//
// A latency estimate is evidence about a host only while answers refresh it.
// In a small group the costliest host never wins a two-choice draw, so an
// estimate left alone would keep a host out for as long as it takes to decay
// (tens of seconds after one slow answer). An estimate no answer refreshed
// for LATENCY_TTL_MS is therefore forgotten: the host is unknown again, and
// an unknown host is tried at once, one attempt at a time, until it answers.

export type Balance = 'least-request' | 'round-robin' | 'peak-ewma';

/** What the balancer reads and keeps on each host. */
export interface BalancedHost {
  /** The configured weight, a positive whole number. */
  readonly weight: number;
  /** Attempts in flight on this host. */
  active: number;
  /** Smooth round-robin's running weight. */
  current: number;
  /** Peak-EWMA of the time to response headers, in ms, and when it was last updated (`0`: no estimate). */
  latency: number;
  latencyAt: number;
  /** The latest attempt failed (no answer since): in a draw the host is priced as its rival. */
  failed: boolean;
  /** When the host joined or came back, for slow start (ms); `-Infinity` when it never needs one. */
  warmingSince: number;
}

/** How fast an estimate follows the answers below it: the weight of the past falls to 1/e in this many ms (Finagle's and Linkerd's decay time). */
export const LATENCY_DECAY_MS = 10_000;
/** An estimate that no answer refreshed for this long is forgotten, in ms: the host is tried again. */
export const LATENCY_TTL_MS = 1_000;
/** The cost of a host with attempts in flight and no estimate: above any latency × load seen in practice. */
const UNANSWERED_COST = 1e9;
/** The lowest cost a known host can have, so load still ranks hosts whose estimate rounds to 0. */
const MIN_LATENCY_MS = 0.001;

/** The share of its traffic a host gets now: 1, or from 0.1 up to 1 over `slowStart` ms after it joined or came back (Envoy's ramp, aggression 1). */
export function slowStartFactor(host: BalancedHost, now: number, slowStart: number): number {
  const age = now - host.warmingSince;
  if (slowStart <= 0 || age >= slowStart) return 1;
  return Math.max(0.1, age / slowStart);
}

/** The weight round-robin gives a host now: its weight × its slow-start share. */
export function effectiveWeight(host: BalancedHost, now: number, slowStart: number): number {
  return host.weight * slowStartFactor(host, now, slowStart);
}

/** Whether the host has a latency estimate that answers have kept fresh. */
export function hasEstimate(host: BalancedHost, now: number): boolean {
  return host.latencyAt !== 0 && now - host.latencyAt <= LATENCY_TTL_MS;
}

/** The host's latency estimate now, in ms, decayed for the time it was not updated; `null` when it has none (never answered, or forgotten). */
export function latencyOf(host: BalancedHost, now: number): number | null {
  if (!hasEstimate(host, now)) return null;
  return host.latency * Math.exp(-(now - host.latencyAt) / LATENCY_DECAY_MS);
}

/**
 * Records one response time: a sample above the estimate (or the first one)
 * replaces it at once (peak-sensitive), one below pulls it down by how long
 * ago the last one was.
 */
export function recordLatency(host: BalancedHost, ms: number, now: number): void {
  const estimate = latencyOf(host, now);
  if (estimate === null || ms > estimate) {
    host.latency = ms;
  } else {
    const keep = Math.exp(-(now - host.latencyAt) / LATENCY_DECAY_MS);
    host.latency = estimate * keep + ms * (1 - keep);
  }
  host.latencyAt = now;
  host.failed = false;
}

/**
 * Records a failed attempt: it must make the host neither the fastest (a
 * quick 503 or a refused connection would draw the traffic to itself) nor
 * the slowest. In a two-choice draw the costliest host never wins, so a
 * failing host priced above its peers (by a slow 503, a peak of its own, or
 * a figure its peers have since left behind) would not be tried again until
 * its estimate is forgotten, and outlier detection would take seconds to see
 * `consecutiveFailures` of them. So until it answers again the host is
 * priced as its rival in each draw (a tie, which the first drawn wins: half
 * its draws) and keeps as its estimate `reference`, the typical estimate of
 * its peers, for the snapshot and for a draw against another failed host.
 * With no peer to compare, the failure's own time (at least 0.001 ms).
 */
export function recordFailureLatency(host: BalancedHost, ms: number | null, reference: number, now: number): void {
  host.latency = reference > 0 ? reference : Math.max(latencyOf(host, now) ?? 0, ms ?? 0, MIN_LATENCY_MS);
  host.latencyAt = now;
  host.failed = true;
}

function cost(host: BalancedHost, rival: BalancedHost, balance: Balance, now: number): number {
  const load = (host.active + 1) / host.weight;
  if (balance !== 'peak-ewma') return load;
  let latency = latencyOf(host, now);
  if (latency === null) {
    // Unknown: tried at once, but one attempt at a time until it answers
    // (Finagle's penalty), or a cold or returning slow host would take a
    // burst before its first answer.
    return host.active > 0 ? UNANSWERED_COST + load : 0;
  }
  if (host.failed && !rival.failed) latency = latencyOf(rival, now) ?? latency;
  return load * Math.max(latency, MIN_LATENCY_MS);
}

/** The `n`-th host (0-based) that `isCandidate` accepts. */
function nth<H extends BalancedHost>(hosts: readonly H[], isCandidate: (host: H) => boolean, n: number): H {
  let seen = 0;
  for (const host of hosts) {
    if (!isCandidate(host)) continue;
    if (seen === n) return host;
    seen += 1;
  }
  throw new RangeError('fewer candidates than counted');
}

/**
 * Picks among the hosts `isCandidate` accepts (`count` of them, at least
 * one). `random` returns a number in [0, 1). A `forced` host (a probe) is
 * returned as it is; round-robin still counts it as the turn it takes, so
 * shares over a cycle stay as weighted.
 */
export function pick<H extends BalancedHost>(
  hosts: readonly H[],
  isCandidate: (host: H) => boolean,
  count: number,
  balance: Balance,
  now: number,
  slowStart: number,
  random: () => number,
  forced: H | null = null,
): H {
  if (balance === 'round-robin') {
    let total = 0;
    let best: H | null = null;
    for (const host of hosts) {
      if (!isCandidate(host)) continue;
      const weight = effectiveWeight(host, now, slowStart);
      host.current += weight;
      total += weight;
      if (best === null || host.current > best.current) best = host;
    }
    if (best === null) throw new RangeError('no candidate host');
    const chosen = forced ?? best;
    chosen.current -= total;
    return chosen;
  }
  if (forced !== null) return forced;
  if (count === 1) return nth(hosts, isCandidate, 0);
  const first = Math.floor(random() * count);
  let second = Math.floor(random() * (count - 1));
  if (second >= first) second += 1;
  const a = nth(hosts, isCandidate, first);
  const b = nth(hosts, isCandidate, second);
  const [winner, loser] = cost(b, a, balance, now) < cost(a, b, balance, now) ? [b, a] : [a, b];
  // A warming host keeps a draw it won with the probability of its share;
  // under peak-ewma one with no estimate keeps it outright: that is the one
  // probe at a time an unknown host gets (see cost), so a host back in
  // rotation is tried at once and its share ramps from its first answer.
  const share = balance === 'peak-ewma' && !hasEstimate(winner, now) ? 1 : slowStartFactor(winner, now, slowStart);
  return share < 1 && random() >= share ? loser : winner;
}

// Picks the host for one attempt. Pure: hosts carry their own counters, time
// and randomness come from the caller, and a pick allocates nothing.
//
// - least-request: two random choices, the lower `(active + 1) / weight` wins
//   (Envoy's and Finagle's "power of two choices").
// - round-robin: smooth weighted round-robin (nginx's), each host in turn in
//   proportion to its weight.
// - peak-ewma: two random choices, the lower `latency × (active + 1) / weight`
//   wins, where latency is a peak-sensitive moving average of the time to
//   response headers that decays while a host is not used (Finagle's and
//   Linkerd's latency-aware balancing): a slow host loses nearly every draw.

export type Balance = 'least-request' | 'round-robin' | 'peak-ewma';

/** What the balancer reads and keeps on each host. */
export interface BalancedHost {
  /** The configured weight, a positive whole number. */
  readonly weight: number;
  /** Attempts in flight on this host. */
  active: number;
  /** Smooth round-robin's running weight. */
  current: number;
  /** Peak-EWMA of the time to response headers, in ms, and when it was last updated. */
  latency: number;
  latencyAt: number;
  /** When the host joined or came back, for slow start (ms); `-Infinity` when it never needs one. */
  warmingSince: number;
}

/** How long an unused host's latency estimate takes to fall to 1/e of itself, in ms (Finagle's decay time). */
export const LATENCY_DECAY_MS = 10_000;
/** The latency assumed for a host with no sample yet, in ms: low, so new hosts are tried. */
const FIRST_LATENCY_MS = 1;
/** The cost of a host with attempts in flight and no answer yet: above any latency × load seen in practice. */
const UNANSWERED_COST = 1e9;

/**
 * The weight a host gets now: its weight, ramped over `slowStart` ms after it
 * joined or came back, from 10 % (Envoy's formula with aggression 1).
 */
export function effectiveWeight(host: BalancedHost, now: number, slowStart: number): number {
  const age = now - host.warmingSince;
  if (slowStart <= 0 || age >= slowStart) return host.weight;
  return host.weight * Math.max(0.1, age / slowStart);
}

/** The host's latency estimate now, decayed for the time it was not updated. */
export function latencyOf(host: BalancedHost, now: number): number {
  if (host.latencyAt === 0) return FIRST_LATENCY_MS;
  return host.latency * Math.exp(-(now - host.latencyAt) / LATENCY_DECAY_MS);
}

/**
 * Records one response time: a sample above the estimate replaces it at once
 * (peak-sensitive), one below pulls it down by how long ago the last one was.
 */
export function recordLatency(host: BalancedHost, ms: number, now: number): void {
  if (host.latencyAt === 0 || ms > host.latency) {
    host.latency = ms;
  } else {
    const keep = Math.exp(-(now - host.latencyAt) / LATENCY_DECAY_MS);
    host.latency = host.latency * keep + ms * (1 - keep);
  }
  host.latencyAt = now;
}

function cost(host: BalancedHost, balance: Balance, now: number, slowStart: number): number {
  const load = (host.active + 1) / effectiveWeight(host, now, slowStart);
  if (balance !== 'peak-ewma') return load;
  // A host that has not answered yet but already holds attempts is unknown,
  // not fast: it loses to any host with a sample (Finagle's penalty), or a
  // cold or newly joined slow host would take a burst before its first answer.
  if (host.latencyAt === 0 && host.active > 0) return UNANSWERED_COST + load;
  return load * Math.max(latencyOf(host, now), 0.001);
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
 * one). `random` returns a number in [0, 1).
 */
export function pick<H extends BalancedHost>(
  hosts: readonly H[],
  isCandidate: (host: H) => boolean,
  count: number,
  balance: Balance,
  now: number,
  slowStart: number,
  random: () => number,
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
    best.current -= total;
    return best;
  }
  if (count === 1) return nth(hosts, isCandidate, 0);
  const first = Math.floor(random() * count);
  let second = Math.floor(random() * (count - 1));
  if (second >= first) second += 1;
  const a = nth(hosts, isCandidate, first);
  const b = nth(hosts, isCandidate, second);
  return cost(b, balance, now, slowStart) < cost(a, balance, now, slowStart) ? b : a;
}

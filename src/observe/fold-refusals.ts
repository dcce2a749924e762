// An open circuit refuses every request in microseconds: logged one line per
// refusal, a busy gateway writes thousands of identical lines a second. This
// wraps an `onFailure` hook so that refusals reach it folded: the first one at
// once, then at most one per interval per upstream and code, each carrying in
// `refusals` how many refusals it stands for. Nothing is dropped from the
// counts: what is folded when refusals stop is reported at the end of the
// interval. Every other failure passes through untouched.

import { callHook } from '../exchange/exchange.js';
import type { FailureEvent } from './hooks.js';

type Refusal = 'CIRCUIT_OPEN' | 'UPSTREAM_OVERLOADED';

export interface FoldRefusalsOptions {
  /** The shortest time between two reported refusals of one upstream and code, in ms. Default `1000`. */
  interval?: number;
  /** The codes folded. Default: both refusals, `CIRCUIT_OPEN` and `UPSTREAM_OVERLOADED`. */
  codes?: readonly Refusal[];
}

/** An `onFailure` hook that folds refusals; `flush()` reports what is folded now (on shutdown). */
export interface FoldedFailureHook {
  (event: FailureEvent): void;
  /** Reports every folded refusal at once and clears the timers. */
  flush(): void;
}

interface Folding {
  /** When a refusal of this key was last reported (`performance.now()`), or -Infinity. */
  reportedAt: number;
  /** Refusals folded since then, and the latest of them. */
  pending: number;
  latest: FailureEvent | null;
  timer: NodeJS.Timeout | null;
}

/**
 * Wraps `hook` so that refusals (`CIRCUIT_OPEN`, `UPSTREAM_OVERLOADED`) reach
 * it folded: the first at once, then at most one per `interval` ms per
 * upstream and code. A reported refusal's `refusals` is the number of refusals
 * it stands for: itself and those folded into it since the previous report
 * (1 for one alone). Folded refusals left when they stop are reported at the
 * end of the interval, with the event of the last of them. Other failures pass
 * through untouched, without `refusals`. Share one wrapped hook between the
 * proxies of one upstream to fold their refusals together.
 */
export function foldRefusals(hook: (event: FailureEvent) => void, options: FoldRefusalsOptions = {}): FoldedFailureHook {
  const interval = options.interval ?? 1000;
  if (typeof interval !== 'number' || !Number.isFinite(interval) || interval <= 0) {
    throw new TypeError(`Expected \`interval\` to be a positive number of milliseconds, got ${String(interval)}.`);
  }
  const codes = new Set<string>(options.codes ?? ['CIRCUIT_OPEN', 'UPSTREAM_OVERLOADED']);
  const foldings = new Map<string, Folding>();

  const report = (folding: Folding, event: FailureEvent, refusals: number): void => {
    folding.reportedAt = performance.now();
    folding.pending = 0;
    folding.latest = null;
    if (folding.timer !== null) clearTimeout(folding.timer);
    folding.timer = null;
    callHook(hook, { ...event, refusals });
  };

  const flushOne = (folding: Folding): void => {
    const { latest, pending } = folding;
    if (latest !== null && pending > 0) report(folding, latest, pending);
  };

  const folded = (event: FailureEvent): void => {
    if (!codes.has(event.code)) {
      callHook(hook, event);
      return;
    }
    const key = `${event.upstream}\n${event.code}`;
    let folding = foldings.get(key);
    if (folding === undefined) {
      folding = { reportedAt: Number.NEGATIVE_INFINITY, pending: 0, latest: null, timer: null };
      foldings.set(key, folding);
    }
    const now = performance.now();
    if (now - folding.reportedAt >= interval) {
      report(folding, event, folding.pending + 1);
      return;
    }
    folding.pending += 1;
    folding.latest = event;
    if (folding.timer === null) {
      const current = folding;
      current.timer = setTimeout(() => {
        current.timer = null;
        flushOne(current);
      }, folding.reportedAt + interval - now);
      current.timer.unref();
    }
  };

  return Object.assign(folded, {
    flush(): void {
      for (const folding of foldings.values()) flushOne(folding);
    },
  });
}

// The race of a hedged request's attempts: the first attempt starts; each
// hedge delay without a response head sends the same request to another host,
// while the policy and the exchange allow it; the first head that would go to
// the client wins and the others are cancelled at once (their sockets are
// destroyed by undici's abort). Losers are neutral: no failure, no success, for
// the breaker, outlier detection, retry throttling and the adaptive limit; only
// the hedge's own latency window learns how long they had waited.
// When every attempt fails, the race ends with the last failure and the retry
// loop decides, as it does for a single attempt. docs/tail-and-overload.md.

import type { AttemptOutcome } from './attempt.js';
import type { HedgePolicy } from '../policy/hedge.js';

const HEDGE_LOST_CODE = 'ERR_RESILIENT_PROXY_HEDGE_LOST';

/** The reason a hedged request's losing attempt is cancelled: another attempt's head won. */
export class HedgeLostError extends Error {
  readonly code = HEDGE_LOST_CODE;

  constructor() {
    super('Another attempt of this request answered first');
    this.name = 'HedgeLostError';
  }
}

export function isHedgeLost(error: unknown): error is HedgeLostError {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === HEDGE_LOST_CODE;
}

/** What the race needs of an attempt: to cancel it, and when its head came. */
export interface RacedCall {
  abort(reason: Error): void;
  /** `performance.now()` when the response head arrived; 0 for none. */
  readonly headersAt: number;
}

/** One attempt of a race, as the attempt sees it. */
export interface HedgeLane {
  /** The attempt is a hedge, not the request's first attempt of this race. */
  readonly hedge: boolean;
  /** The attempt runs: the race may cancel it. */
  attach(attempt: RacedCall): void;
  /** A response head that would go to the client arrived: `true` when it wins (the others are cancelled), `false` when another won. */
  readonly claim: () => boolean;
  /** Another attempt of the race won: this one's host is not the request's. */
  readonly lost: boolean;
}

export interface RaceSpec {
  readonly policy: HedgePolicy;
  /** Runs attempt `n` on a host this request has not tried. */
  run(n: number, lane: HedgeLane): Promise<AttemptOutcome>;
  /** Whether a hedge may go out now (the exchange's state, then the budget); told the attempt number it would be. */
  mayHedge(): boolean;
  /** The number the next attempt would carry. */
  nextAttempt(): number;
}

class Lane implements HedgeLane {
  attempt: RacedCall | null = null;
  readonly startedAt = performance.now();

  constructor(
    readonly race: HedgeRace,
    readonly hedge: boolean,
  ) {}

  attach(attempt: RacedCall): void {
    this.attempt = attempt;
    const reason = this.race.cancelReason;
    if (reason !== null) attempt.abort(reason);
  }

  readonly claim = (): boolean => this.race.claim(this);

  get lost(): boolean {
    return this.race.lost(this);
  }
}

export class HedgeRace {
  readonly #spec: RaceSpec;
  readonly #lanes: Lane[] = [];
  #winner: Lane | null = null;
  #running = 0;
  #hedges = 0;
  #timer: NodeJS.Timeout | null = null;
  /** No more hedges: one was refused, an attempt failed, or the race was cancelled. */
  #stopped = false;
  #last: AttemptOutcome | null = null;
  #error: { error: unknown } | null = null;
  #delay = 0;
  #resolve!: (outcome: AttemptOutcome) => void;
  #reject!: (error: unknown) => void;
  cancelReason: Error | null = null;

  constructor(spec: RaceSpec) {
    this.#spec = spec;
  }

  /** Runs attempt `first` and its hedges; settles with the winner's outcome, or the last failure when none won. */
  run(first: number): Promise<AttemptOutcome> {
    const promise = new Promise<AttemptOutcome>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.#delay = this.#spec.policy.delay();
    this.#launch(first, false);
    this.#arm();
    return promise;
  }

  /** Ends every attempt under way (the client left, the deadline ran out). */
  cancel(reason: Error): void {
    if (this.cancelReason !== null) return;
    this.cancelReason = reason;
    this.#stop();
    for (const lane of this.#lanes) lane.attempt?.abort(reason);
  }

  lost(lane: Lane): boolean {
    return this.#winner !== null && this.#winner !== lane;
  }

  claim(lane: Lane): boolean {
    if (this.#winner !== null) return this.#winner === lane;
    this.#winner = lane;
    this.#stop();
    if (lane.hedge) this.#spec.policy.wins += 1;
    const lost = new HedgeLostError();
    for (const other of this.#lanes) if (other !== lane) other.attempt?.abort(lost);
    return true;
  }

  #arm(): void {
    if (this.#stopped || this.#hedges >= this.#spec.policy.options.maxHedges) return;
    this.#timer = setTimeout(this.#fire, this.#delay);
  }

  readonly #fire = (): void => {
    this.#timer = null;
    if (this.#stopped || this.#winner !== null) return;
    if (!this.#spec.mayHedge()) {
      this.#stopped = true;
      return;
    }
    this.#hedges += 1;
    this.#launch(this.#spec.nextAttempt(), true);
    this.#arm();
  };

  #stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #launch(n: number, hedge: boolean): void {
    const lane = new Lane(this, hedge);
    this.#lanes.push(lane);
    this.#running += 1;
    this.#spec.run(n, lane).then(
      (outcome) => this.#settled(lane, outcome),
      (error: unknown) => {
        this.#error ??= { error };
        this.#settled(lane, null);
      },
    );
  }

  #settled(lane: Lane, outcome: AttemptOutcome | null): void {
    this.#running -= 1;
    const attempt = lane.attempt;
    if (attempt !== null && attempt.headersAt > 0) this.#spec.policy.record(attempt.headersAt - lane.startedAt);
    else if (outcome?.kind === 'failed' && isHedgeLost(outcome.error)) this.#spec.policy.record(performance.now() - lane.startedAt);
    if (this.#winner === lane) {
      this.#finish(outcome);
      return;
    }
    if (this.#winner !== null) return;
    // A failure (a failure status is the upstream's pushback) sends no more hedges: the retry loop takes over once all have ended.
    this.#stop();
    if (outcome !== null) this.#last = outcome;
    if (this.#running === 0) this.#finish(this.#error === null ? this.#last : null);
  }

  #finish(outcome: AttemptOutcome | null): void {
    this.#stop();
    if (outcome !== null) this.#resolve(outcome);
    else this.#reject(this.#error?.error);
  }
}

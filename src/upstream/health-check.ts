// Active health checks for one host: a GET to `path` every `interval`
// (jittered), over the host's own dispatcher. `unhealthyThreshold` failures in
// a row take the host out of rotation, `healthyThreshold` passes in a row put
// it back. Timers are unref'd and the check in flight is aborted on stop, so
// checks never keep a process alive or leave a socket behind.

import type { Dispatcher } from 'undici';

export interface HealthCheckOptions {
  /** The path requested on each host (from its root, not under the target's path). Default `'/healthz'`. */
  path: string;
  /** Time between two checks of one host, in ms (±10 % jitter). Default `10000`. */
  interval: number;
  /** A check that has not answered in this many ms fails. Default `2000`. */
  timeout: number;
  /** Passes in a row that bring an unhealthy host back. Default `2`. */
  healthyThreshold: number;
  /** Failures in a row that take a host out. Default `2`. */
  unhealthyThreshold: number;
}

export type CheckVerdict = 'healthy' | 'unhealthy' | null;

/** Counts results in a row; says when the host's health changes. Pure. */
export class CheckCounter {
  #passes = 0;
  #failures = 0;
  healthy = true;

  constructor(readonly options: Readonly<HealthCheckOptions>) {}

  /** Records one result; returns the new verdict when it changes, else `null`. */
  record(passed: boolean): CheckVerdict {
    if (passed) {
      this.#failures = 0;
      this.#passes += 1;
      if (!this.healthy && this.#passes >= this.options.healthyThreshold) {
        this.healthy = true;
        return 'healthy';
      }
    } else {
      this.#passes = 0;
      this.#failures += 1;
      if (this.healthy && this.#failures >= this.options.unhealthyThreshold) {
        this.healthy = false;
        return 'unhealthy';
      }
    }
    return null;
  }
}

/** Runs the checks of one host until stopped. */
export class HealthChecker {
  readonly #counter: CheckCounter;
  #timer: NodeJS.Timeout | null = null;
  #inFlight: AbortController | null = null;
  #stopped = false;

  constructor(
    readonly options: Readonly<HealthCheckOptions>,
    readonly dispatcher: Dispatcher,
    readonly origin: string,
    /**
     * Told after every check: whether it passed, and the new verdict when the
     * host's health changed. Every pass is news, not only a change: it brings
     * back a host that outlier detection ejected.
     */
    readonly onCheck: (passed: boolean, verdict: CheckVerdict) => void,
  ) {
    this.#counter = new CheckCounter(options);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#stopped) return;
    const delay = this.options.interval * (0.9 + Math.random() * 0.2);
    this.#timer = setTimeout(() => void this.#check(), delay);
    this.#timer.unref();
  }

  async #check(): Promise<void> {
    this.#timer = null;
    const controller = new AbortController();
    this.#inFlight = controller;
    const timer = setTimeout(() => controller.abort(), this.options.timeout);
    timer.unref();
    let passed = false;
    try {
      const response = await this.dispatcher.request({
        origin: this.origin,
        path: this.options.path,
        method: 'GET',
        headers: { 'user-agent': 'resilient-proxy-health-check' },
        signal: controller.signal,
      });
      await response.body.dump();
      passed = response.statusCode >= 200 && response.statusCode < 300;
    } catch {
      passed = false;
    } finally {
      clearTimeout(timer);
      this.#inFlight = null;
    }
    if (this.#stopped) return;
    this.onCheck(passed, this.#counter.record(passed));
    this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#inFlight?.abort();
  }
}

// A kept response played back as if the upstream answered it now. It goes
// through an Attempt like a live response, so the response hooks (redirect
// and cookie rewriting, `headers.response`, `transformResponse`) run for the
// request being served: what they build from one user's request is never
// kept and handed to another.

import type { IncomingHttpHeaders } from 'node:http';
import { Dispatcher } from 'undici';

/** A kept response to play back: the origin's status, headers and body. */
export interface Playback {
  readonly status: number;
  readonly statusMessage: string;
  readonly headers: IncomingHttpHeaders;
  /** Empty for a HEAD. */
  readonly body: Buffer;
}

/** The steps of a playback, in order. */
const STEPS = ['request', 'head', 'body', 'end'] as const;

/** A dispatcher that answers its one request with a kept response, honouring pause and abort as undici does. */
export class PlaybackDispatcher extends Dispatcher {
  readonly #playback: Playback;

  constructor(playback: Playback) {
    super();
    this.#playback = playback;
  }

  override dispatch(_options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const playback = this.#playback;
    let step = 0;
    let aborted = false;
    let paused = false;
    let reason: Error | null = null;
    const run = (): void => {
      while (!aborted && !paused && step < STEPS.length) {
        const current = STEPS[step];
        step += 1;
        if (current === 'request') handler.onRequestStart?.(controller, {});
        else if (current === 'head') handler.onResponseStart?.(controller, playback.status, playback.headers, playback.statusMessage);
        else if (current === 'body') {
          if (playback.body.length > 0) handler.onResponseData?.(controller, playback.body);
        } else handler.onResponseEnd?.(controller, {});
      }
    };
    const controller: Dispatcher.DispatchController = {
      get aborted() {
        return aborted;
      },
      get paused() {
        return paused;
      },
      get reason() {
        return reason;
      },
      abort(error: Error) {
        aborted = true;
        reason = error;
      },
      pause() {
        paused = true;
      },
      resume() {
        if (!paused) return;
        paused = false;
        queueMicrotask(run);
      },
    };
    // Later, as a socket would: the caller finishes dispatch() first.
    queueMicrotask(run);
    return true;
  }

  override close(): Promise<void> {
    return Promise.resolve();
  }

  override destroy(): Promise<void> {
    return Promise.resolve();
  }
}

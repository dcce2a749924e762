// The bound on a user function the request waits for (`headers.request`,
// `transformResponse`): one that never settles ends the request with the
// contract (PROXY_INTERNAL_ERROR: the user's code, not the upstream) instead
// of holding the client, whatever `timeout.total` says.

import { RewriteHookError } from '../contract/errors.js';

/** What `settleHook` returns when `signal` ended the wait (the client left, or the deadline). */
export const HOOK_CANCELLED = Symbol('hook cancelled');

/**
 * Runs `run` and waits for it at most `ms` (0: no bound) and until `signal`
 * aborts. A throw or rejection, and a hook that has not settled in time, are
 * RewriteHookErrors naming `hook`. `signal` may be a function that makes it:
 * it is then called only when the hook returned a promise, so a synchronous
 * hook costs no AbortController.
 */
export function settleHook<T>(hook: string, ms: number, run: () => T | PromiseLike<T>): Promise<Awaited<T>>;
export function settleHook<T>(hook: string, ms: number, run: () => T | PromiseLike<T>, signal: AbortSignal | (() => AbortSignal)): Promise<Awaited<T> | typeof HOOK_CANCELLED>;
export async function settleHook<T>(hook: string, ms: number, run: () => T | PromiseLike<T>, signalOrMake?: AbortSignal | (() => AbortSignal)): Promise<Awaited<T> | typeof HOOK_CANCELLED> {
  let returned: T | PromiseLike<T>;
  try {
    returned = run();
  } catch (error) {
    throw new RewriteHookError(`The \`${hook}\` function threw or rejected`, { cause: error });
  }
  // A hook that answered at once has nothing left to bound: no timer, no race (most hooks are synchronous).
  const made = typeof signalOrMake === 'function';
  if (!isThenable(returned)) return !made && signalOrMake?.aborted === true ? HOOK_CANCELLED : (returned as Awaited<T>);
  const pending = returned;
  const signal = typeof signalOrMake === 'function' ? signalOrMake() : signalOrMake;
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const bound = new Promise<typeof HOOK_CANCELLED>((resolve, reject) => {
    if (ms > 0) timer = setTimeout(() => reject(new RewriteHookError(`\`${hook}\` did not settle within timeout.hook (${ms} ms)`)), ms);
    if (signal === undefined) return;
    onAbort = () => resolve(HOOK_CANCELLED);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  const called = (async () => {
    try {
      return await pending;
    } catch (error) {
      throw new RewriteHookError(`The \`${hook}\` function threw or rejected`, { cause: error });
    }
  })();
  try {
    return await Promise.race([called, bound]);
  } finally {
    clearTimeout(timer);
    if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

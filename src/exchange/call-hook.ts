// Calls a user's observing hook (`onFailure`, `onRetry`…): one that throws
// must not break the request it observes; it is said once, as a warning.

const HOOK_WARNED = new WeakSet<object>();

/** Hooks observe; one that throws must not break the request it observes. */
export function callHook<T>(hook: ((event: T) => void) | undefined, event: T): void {
  if (hook === undefined) return;
  try {
    hook(event);
  } catch (error) {
    if (!HOOK_WARNED.has(hook)) {
      HOOK_WARNED.add(hook);
      process.emitWarning(`A resilient-proxy hook threw; it is ignored: ${String(error)}`, {
        code: 'RESILIENT_PROXY_HOOK_ERROR',
      });
    }
  }
}

// Whether this process's own event loop lagged while an attempt ran. A
// latency measured across a stall of ours is our time, not the upstream's
// (DESIGN.md §20): the adaptive limit must not shrink for it. One unref'd
// interval per process, started by the first adaptive limit and stopped by
// the last, notes when a tick came late.

/** How often the probe ticks, in ms. */
const TICK_MS = 50;
/** A tick this much later than due means the loop stalled. */
const LAG_MS = 20;

let users = 0;
let timer: NodeJS.Timeout | null = null;
let lastTick = 0;
/** When the latest stall ended (performance.now()), and how long past due the tick came, in ms. */
let lastLag = Number.NEGATIVE_INFINITY;
let lastLagMs = 0;

function tick(): void {
  const now = performance.now();
  const late = now - lastTick - TICK_MS;
  if (late > LAG_MS) {
    lastLag = now;
    lastLagMs = late;
  }
  lastTick = now;
}

/** Starts the probe for one more user; the returned function stops it for that user. */
export function watchLoopLag(): () => void {
  users += 1;
  if (timer === null) {
    lastTick = performance.now();
    timer = setInterval(tick, TICK_MS);
    timer.unref();
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    users -= 1;
    if (users === 0 && timer !== null) {
      clearInterval(timer);
      timer = null;
    }
  };
}

/** The longest stall of the loop, in ms, noticed since `since` (performance.now()), a stall under way now included; 0 for none. */
export function loopLagSince(since: number): number {
  if (timer === null) return 0;
  const now = performance.now();
  const current = now - lastTick - TICK_MS;
  return Math.max(lastLag >= since ? lastLagMs : 0, current > LAG_MS ? current : 0);
}

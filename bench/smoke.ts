// CI's smoke run of every benchmark: each script with `--smoke` (a few seconds
// of every measurement, to prove it still works; nothing is written to
// bench/results/), one after another in child processes started directly with
// Node (no npx per script). Stops at the first failure.
//
//   npx tsx bench/smoke.ts            every benchmark
//   npx tsx bench/smoke.ts cpu fleet  only these

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './results.js';

/** Every benchmark with a `--smoke` mode; a new one is one more line. */
const BENCHES = [
  'run', // throughput, memory, refusal, amplification (npm run bench)
  'cpu', // CPU time per request, side by side
  'faults', // a group of three under faults; nginx and tcpdump parts skipped when absent
  'rewrite-cost',
  'stale-cost',
  'websocket',
  'otel-cost',
  'breaker-attack',
  'collapse', // adaptive concurrency against fixed limits
  'tail', // hedged requests against none, nginx and http-proxy-middleware
  'fleet', // N instances: retry throttling in an outage, DNS churn on a real dnsmasq, stale through a real redis-server
];

const only = process.argv.slice(2);
for (const name of only.length === 0 ? BENCHES : only) {
  if (!BENCHES.includes(name)) throw new TypeError(`unknown benchmark ${name}: one of ${BENCHES.join(', ')}`);
  const started = performance.now();
  console.log(`\n--- bench/${name}.ts --smoke`);
  const { status, signal } = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', `${name}.ts`), '--smoke'], { stdio: 'inherit' });
  if (status !== 0) {
    console.error(`bench/${name}.ts --smoke failed (${signal ?? `exit ${String(status)}`})`);
    process.exit(1);
  }
  console.log(`--- bench/${name}.ts --smoke: ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

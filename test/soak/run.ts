// `npm run soak`: the long chaos soak. Prints, per framework, the requests,
// the faults injected, what clients saw, the invariant violations (0 is the
// only acceptable number), and handles and heap before and after.
// Run: npm run soak [-- --requests 50000 --concurrency 200 --seed 1]

import { runSoak, settledBack, type Framework } from './chaos.js';

function argument(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index === -1 ? fallback : Number(process.argv[index + 1]);
}

const requests = argument('requests', 50_000);
const concurrency = argument('concurrency', 200);
const seed = argument('seed', 1);
const plan: [Framework, number][] = [
  ['express', requests],
  ['fastify', Math.round(requests / 5)],
  ['koa', Math.round(requests / 5)],
];

let failed = false;
for (const [framework, count] of plan) {
  const report = await runSoak({ framework, requests: count, concurrency, seed });
  const clean = report.violations === 0 && report.inFlightAfter === 0 && settledBack(report.handles.before, report.handles.after);
  failed ||= !clean;
  console.log(`\n## ${framework}: ${report.requests} requests, concurrency ${concurrency}, seed ${seed}, ${report.seconds.toFixed(1)} s (${(report.requests / report.seconds).toFixed(0)} req/s)`);
  console.log(`faults injected: ${JSON.stringify(report.faults)}`);
  console.log(`client outcomes: ${JSON.stringify(report.outcomes)}`);
  console.log(`invariant violations: ${report.violations}${report.examples.length > 0 ? `\n  ${report.examples.join('\n  ')}` : ''}`);
  console.log(`breaker in-flight after: ${report.inFlightAfter}`);
  console.log(`handles before: ${JSON.stringify(report.handles.before)}`);
  console.log(`handles after:  ${JSON.stringify(report.handles.after)}`);
  console.log(`heap after GC: ${report.heapMiB.before.toFixed(1)} MiB before, ${report.heapMiB.after.toFixed(1)} MiB after`);
}
process.exitCode = failed ? 1 : 0;

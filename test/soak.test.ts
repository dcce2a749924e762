// The short chaos soak that runs with every test run (`npm run soak` is the
// long one): thousands of requests through Express, Fastify and Koa against
// a randomly failing upstream, every request checked, nothing left behind.

import { describe, expect, it } from 'vitest';
import { runSoak, settledBack, type Framework } from './soak/chaos.js';

const runs: { framework: Framework; requests: number }[] = [
  { framework: 'express', requests: 1500 },
  { framework: 'fastify', requests: 500 },
  { framework: 'koa', requests: 500 },
];

describe('chaos soak (short)', () => {
  it.each(runs)('$framework: $requests requests, every one ends as promised', async ({ framework, requests }) => {
    const report = await runSoak({ framework, requests, concurrency: 50, seed: 7 });

    expect(report.examples).toStrictEqual([]);
    expect(report.violations).toBe(0);
    expect(report.outcomes.hang).toBeUndefined();
    expect(report.outcomes.success).toBeGreaterThan(requests / 4);
    expect(Object.keys(report.outcomes).some((outcome) => outcome.startsWith('502 '))).toBe(true);
    expect(report.outcomes['cut off after headers']).toBeGreaterThan(0);
    expect(report.inFlightAfter).toBe(0);
    expect(settledBack(report.handles.before, report.handles.after)).toBe(true);
    expect(report.heapMiB.after - report.heapMiB.before).toBeLessThan(16);
  }, 120_000);
});

// docs/stale-on-error.md's measured memory per kept entry, between
// `<!-- stale-memory:start -->` and `<!-- stale-memory:end -->`, from
// bench/results/stale-memory.json (bench/stale-memory.ts).

import type { RunInfo } from '../record.js';
import { bytesLabel, wrap } from './format.js';

export interface StaleMemoryResults {
  readonly run: RunInfo;
  readonly maxBytes: number;
  readonly bodyBytes: number;
  /** `headers`: the extra header fields per response, `u` when each is unique. */
  readonly rows: readonly { readonly headers: string; readonly entries: number; readonly requests: number; readonly accounted: number; readonly heap: number }[];
}

const thousands = (value: number): string => Math.round(value).toLocaleString('en-US');

export function staleMemoryBlock(results: StaleMemoryResults): string {
  const one = results.rows.find((row) => row.headers === '1');
  const worst = results.rows.reduce<StaleMemoryResults['rows'][number] | undefined>((top, row) => (top === undefined || row.heap / row.accounted > top.heap / top.accounted ? row : top), undefined);
  if (one === undefined || worst === undefined) return '';
  const fields = (headers: string): string => `${thousands(Number.parseInt(headers, 10))} header field${headers === '1' ? '' : 's'}${headers.endsWith('u') ? ', each unique' : ''}`;
  return wrap(
    `Measured (\`npx tsx bench/stale-memory.ts\`, ${results.run.date}, a ${bytesLabel(results.maxBytes)} store filled and evicting): ` +
      `about ${thousands(one.heap / one.entries)} bytes of memory per kept ${results.bodyBytes}-byte response with ${fields(one.headers)}, counted as ${thousands(one.accounted / one.entries)}; ` +
      `at most ${(worst.heap / worst.accounted).toFixed(2)}× what is counted (${fields(worst.headers)}), and ${results.rows.every((row) => row.heap <= results.maxBytes) ? 'never more than `maxBytes` in all' : '**more than `maxBytes` in all**'}.`,
  ).join('\n');
}

// BENCHMARKS.md's decompression-bomb table, between `<!-- transform-bomb:start -->`
// and `<!-- transform-bomb:end -->`, from bench/results/transform-bomb.json
// (bench/transform-bomb.ts).

import type { RunInfo } from '../record.js';
import { runLine } from './run-line.js';
import { bytesLabel, wrap } from './format.js';

export interface TransformBombResults {
  readonly run: RunInfo;
  readonly maxBytes: number;
  readonly concurrency: number;
  /** `start` (one real transform), `/json-1m` (real transforms), then the bombs (`/bomb-1g`, `/bomb-4g`). */
  readonly rows: readonly {
    readonly path: string;
    readonly wire: number;
    readonly requests: number;
    readonly untransformed: boolean;
    readonly transformCalls: number;
    readonly peakRssMiB: number;
  }[];
}

const BODIES: Readonly<Record<string, string>> = {
  start: '(one 1 MiB JSON transform, start)',
  '/json-1m': '1 MiB JSON, really transformed',
  '/bomb-1g': '1 GiB of zeros, brotli',
  '/bomb-4g': '4 GiB of zeros, brotli',
};

export function transformBombBlock(results: TransformBombResults): string {
  const bombs = results.rows.filter((row) => row.path.startsWith('/bomb'));
  const real = results.rows.find((row) => row.path === '/json-1m');
  const worst = Math.max(...bombs.map((row) => row.peakRssMiB));
  const requests = real?.requests ?? 0;
  return [
    ...wrap(
      `The gateway in its own process, \`transformResponse\` matching everything, the default \`maxBytes\` (${bytesLabel(results.maxBytes)}); ` +
        `requests go ${results.concurrency} at a time, ${requests} of each kind. ${runLine(results.run, 'npx tsx bench/transform-bomb.ts')}`,
    ),
    '',
    '| upstream body | on the wire | clients got | transform calls | gateway peak RSS |',
    '|---|---|---|---|---|',
    ...results.rows.map((row) => {
      const wire = `${row.wire.toLocaleString('en-US')} B`;
      const got = row.path.startsWith('/bomb') ? (row.untransformed ? 'the original bytes, untransformed' : '**other bytes**') : 'transformed';
      return `| ${BODIES[row.path] ?? row.path} | ${wire} | ${got} | ${row.transformCalls} | ${row.peakRssMiB} MiB |`;
    }),
    '',
    ...wrap(
      `Peak RSS after the bombs: at most ${worst} MiB, against ${real?.peakRssMiB ?? '?'} MiB after the same number of real ${bytesLabel(results.maxBytes)} transforms ` +
        `(peak RSS only grows, so each row includes the rows above it); not the gigabytes a bomb decodes to.`,
    ),
  ].join('\n');
}

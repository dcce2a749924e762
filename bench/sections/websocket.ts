// BENCHMARKS.md's WebSocket table, between `<!-- websocket:start -->` and
// `<!-- websocket:end -->`, from bench/results/websocket.json (bench/websocket.ts).

import type { RunInfo } from '../record.js';
import { runLine } from './run-line.js';
import { bytesLabel, list, standing, wrap } from './format.js';

export interface WebSocketResults {
  readonly run: RunInfo;
  readonly rounds: number;
  readonly seconds: number;
  readonly connections: number;
  readonly rows: readonly { readonly size: number; readonly name: string; readonly rate: number; readonly p99: number }[];
}

const OURS = 'resilient-proxy';

export function websocketBlock(results: WebSocketResults): string {
  const sizes = [...new Set(results.rows.map((row) => row.size))];
  const ours = (size: number) => results.rows.find((row) => row.size === size && row.name === OURS);
  const table = results.rows.map((row) => {
    const base = ours(row.size)?.rate ?? Number.NaN;
    return `| ${bytesLabel(row.size)} | ${row.name} | ${Math.round(row.rate)} | ${row.p99.toFixed(1)} | ${(row.rate / base).toFixed(2)}× |`;
  });
  // Ours against each peer, per size: ahead, level (within 5 %) or behind.
  const peers = [...new Set(results.rows.map((row) => row.name))].filter((name) => name !== OURS);
  const verdicts = peers.map((peer) => {
    const parts = sizes.map((size) => {
      const theirs = results.rows.find((row) => row.size === size && row.name === peer);
      const ratio = (ours(size)?.rate ?? Number.NaN) / (theirs?.rate ?? Number.NaN);
      return { size, ratio, standing: standing(ratio) };
    });
    const ahead = parts.every((part) => part.standing === 'ahead');
    return {
      ahead,
      text: `against ${peer}'s, ${list(parts.map((part) => `${part.ratio.toFixed(2)}× at ${bytesLabel(part.size)} (${part.standing})`))}`,
    };
  });
  const aheadOfAll = verdicts.every((verdict) => verdict.ahead);
  return [
    ...wrap(
      `WebSocket echo, ${results.connections} connections, ${results.rounds} interleaved rounds of ${results.seconds} s per message size, medians. ` +
        runLine(results.run, `ROUNDS=${results.rounds} SECONDS=${results.seconds} npx tsx bench/websocket.ts`),
    ),
    '',
    '| message | contender | messages/s | p99 ms | vs resilient-proxy |',
    '|---|---|---|---|---|',
    ...table,
    '',
    ...wrap(
      `resilient-proxy's messages/s ${verdicts.map((verdict) => verdict.text).join('; ')} (within 5 % either way counts as level). ` +
        `The goal, ahead of both at every size: ${aheadOfAll ? 'met' : '**not met**'} in this run.`,
    ),
  ].join('\n');
}

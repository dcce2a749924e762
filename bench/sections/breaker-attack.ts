// BENCHMARKS.md's breaker-attack table, between `<!-- breaker-attack:start -->`
// and `<!-- breaker-attack:end -->`, from bench/results/breaker-attack.json
// (bench/breaker-attack.ts, with `--before` the build before the fix).

import type { RunInfo } from '../record.js';
import { runLine } from './run-line.js';
import { list, wrap } from './format.js';

/** One scenario's figures, as bench/breaker-attack.ts measures them. */
export interface AttackResult {
  readonly scenario: string;
  readonly legitimate: number;
  readonly succeeded: number;
  readonly successPercent: number;
  /** After the outage (the whole run when there is none). */
  readonly afterOutageSucceeded: number;
  readonly afterOutageLegitimate: number;
  readonly afterOutagePercent: number;
  readonly attackerRequests: number;
  readonly attackerProbes: number;
  readonly notClosedSeconds: number;
  readonly opened: number;
}

export interface BreakerAttackResults {
  readonly run: RunInfo;
  readonly legitimateRate: number;
  readonly seconds: number;
  readonly outageSeconds: number;
  readonly burst: number;
  readonly before: { readonly build: string; readonly results: readonly AttackResult[] } | null;
  readonly results: readonly AttackResult[];
}

const legit = (r: AttackResult): string => `${r.afterOutageSucceeded} / ${r.afterOutageLegitimate} (${r.afterOutagePercent} %)`;

export function breakerAttackBlock(results: BreakerAttackResults): string {
  const before = results.before?.results ?? [];
  const command = `npx tsx bench/breaker-attack.ts${results.before === null ? '' : ' --before <abdcc12>/dist/index.js'}`;
  const header =
    before.length > 0
      ? ['| scenario | legitimate 200s, before | after | circuit not closed, before | after | circuit opened, before | after |', '|---|---|---|---|---|---|---|']
      : ['| scenario | legitimate 200s | circuit not closed | circuit opened |', '|---|---|---|---|'];
  const rows = results.results.map((r, index) => {
    const b = before[index];
    const scenario = r.afterOutageLegitimate === r.legitimate ? r.scenario : `${r.scenario}: requests after the outage`;
    return b === undefined
      ? `| ${scenario} | ${legit(r)} | ${r.notClosedSeconds} s | ${r.opened} |`
      : `| ${scenario} | ${legit(b)} | ${legit(r)} | ${b.notClosedSeconds} s | ${r.notClosedSeconds} s | ${b.opened} | ${r.opened} |`;
  });
  const attacks = results.results.filter((r) => r.afterOutageLegitimate === r.legitimate);
  const outage = results.results.find((r) => r.afterOutageLegitimate !== r.legitimate);
  const prose = [
    `The attacker's share of all requests in the attack-only scenarios: ${list(attacks.map((r) => `${Math.round((100 * r.attackerRequests) / (r.attackerRequests + r.legitimate))} %`))}.`,
  ];
  if (outage !== undefined) {
    prose.push(
      `In the outage the circuit opened ${outage.opened === 1 ? 'once' : `${outage.opened} times`}; after it, ` +
        `${outage.afterOutageLegitimate - outage.afterOutageSucceeded} legitimate requests were refused or failed, those of the open circuit's last seconds and its probe.`,
    );
  }
  return [
    ...wrap(
      `${results.legitimateRate} legitimate GET/s for ${results.seconds} s per scenario, an opening burst of ${results.burst} failing requests, ` +
        `the outage ${results.outageSeconds} s; ${before.length > 0 ? 'before the fix (abdcc12, built in a temporary folder) and after it, each scenario on both builds in turn. ' : ''}` +
        runLine(results.run, command),
    ),
    '',
    ...header,
    ...rows,
    '',
    ...wrap(prose.join(' ')),
  ].join('\n');
}

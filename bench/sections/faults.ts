// BENCHMARKS.md's fault section, between `<!-- faults:start -->` and
// `<!-- faults:end -->`, from bench/results/faults.json (`npm run bench:faults`).

import type { Balance, FaultResults, FaultRow, FaultScenario, FaultScenarioId } from '../results.js';
import { ms, perRequest, rps, times, wrap } from './format.js';

/** Client failures: non-2xx responses plus socket errors and timeouts. */
const failures = (row: FaultRow): number => row.non2xx + row.errors;
const perReplica = (values: readonly number[]): string => values.join(' / ');
const share = (part: number, whole: number): string => (whole === 0 ? '–' : `${((100 * part) / whole).toFixed(part === 0 || part === whole ? 0 : 1)} %`);
/** Upstream attempts per client request: three decimals, or two significant digits when smaller. */
const loadRatio = (value: number): string => (value === 0 || value >= 0.001 ? perRequest(value) : value.toPrecision(2));
const spreadMs = (s: { median: number; min: number; max: number }): string => `${ms(s.median)} (${ms(s.min)}–${ms(s.max)})`;
const spreadRps = (s: { median: number; min: number; max: number }): string => `${rps(s.median)} (${rps(s.min)}–${rps(s.max)})`;

function statusList(row: FaultRow): string {
  const parts = Object.entries(row.statuses)
    .sort(([, a], [, b]) => b - a)
    .map(([status, count]) => `${status}: ${count}`);
  if (row.errors > 0) parts.push(`socket errors: ${row.errors}`);
  return parts.length === 0 ? 'none' : parts.join(', ');
}

class FaultView {
  constructor(readonly results: FaultResults) {}

  scenario(id: FaultScenarioId): FaultScenario | undefined {
    return this.results.scenarios.find((s) => s.id === id);
  }

  row(id: FaultScenarioId, contender: string): FaultRow | undefined {
    return this.scenario(id)?.rows.find((row) => row.id === contender);
  }

  /** The resilient-proxy group row with this balance mode (the defaults' row for the default mode). */
  balanceRow(id: FaultScenarioId, balance: Balance): FaultRow | undefined {
    const rows = this.scenario(id)?.rows ?? [];
    return rows.find((row) => row.id === 'rp' && row.balance === balance) ?? rows.find((row) => row.id !== 'rp' && row.balance === balance);
  }

  /** Upstream attempts in S6: requests that reached a replica plus connection attempts to their (closed) ports. */
  upstreamLoad(row: FaultRow): { attempts: number; ratio: number } {
    const attempts = row.replicas.reduce((a, b) => a + b, 0) + (row.connects ?? []).reduce((a, b) => a + b, 0);
    return { attempts, ratio: row.requests === 0 ? 0 : attempts / row.requests };
  }
}

/** Which replicas misbehave in a scenario, by number (1-based). */
function faulty(scenario: FaultScenario): number[] {
  return scenario.modes.flatMap((mode, i) => (mode === 'ok' ? [] : [i + 1]));
}

/** Per-round values in ms, as seconds: the median (min–max), with the rounds where it did not happen. */
function roundsSeconds(values: readonly (number | null)[], none: string): string {
  const known = values.flatMap((v) => (v === null ? [] : [v / 1000]));
  if (known.length === 0) return none;
  const sorted = [...known].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? (sorted[middle] ?? 0) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
  const s = (x: number): string => (x < 10 ? x.toFixed(2) : x.toFixed(1));
  const range = sorted.length > 1 ? ` (${s(sorted[0] ?? 0)}–${s(sorted.at(-1) ?? 0)})` : '';
  const missing = values.length - known.length;
  return `${s(median)}${range}${missing > 0 ? `; ${none} in ${missing} of ${values.length}` : ''}`;
}

function restartTable(view: FaultView, scenario: FaultScenario): string[] {
  const { run } = view.results;
  const down = (scenario.downMs ?? 0) / 1000;
  const lines = [
    `### ${scenario.id}: ${scenario.title}`,
    '',
    '| contender | client requests | non-2xx | socket errors | reported out (hook), s after the kill | last connection attempt on the dead port, s after the kill | connection attempts while down | first request after the restart, s | requests per replica (1 / 2 / 3) |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const row of scenario.rows) {
    const r = row.recovery;
    const counted = run.connectsCounted && r !== undefined;
    lines.push(
      `| ${row.label} | ${row.requests} | ${row.non2xx} | ${row.errors} | ${r === undefined || !row.id.startsWith('rp') ? '–' : roundsSeconds(r.outMs, 'never')} | ${counted ? roundsSeconds(r.lastAttemptMs, 'none') : 'not counted'} | ${counted ? r.attemptsWhileDown.map((n) => n ?? '–').join(', ') : 'not counted'} | ${r === undefined ? '–' : roundsSeconds(r.firstRequestMs, `none within the run (${Math.max(...r.runSeconds)} s)`)} | ${perReplica(row.replicas)} |`,
    );
  }
  lines.push(
    '',
    ...wrap(
      `Replica 3 is killed (its port closed, its connections cut) ${(scenario.killAtMs ?? 0) / 1000} s into each run and restarted on the same port ${down} s later; a run ends 1 s after the replica's first request after the restart, or after ${scenario.seconds} s. Times are medians over rounds (min–max). The hook column is resilient-proxy's \`onHostStateChange\` (ejected, or \`failing\` when \`maxEjectionPercent\` leaves no room); the last connection attempt (a SYN on loopback, counted with tcpdump) is when a contender stopped trying the dead port, measured the same way for all; connection attempts are per round. resilient-proxy takes a host back when its ejection ends (\`outlierDetection.baseEjectionTime\`, 30 s by default, as Envoy), nginx when \`fail_timeout\` (10 s) has passed since its last failure; http-proxy-middleware never stops trying.`,
    ),
    '',
  );
  return lines;
}

function scenarioTable(view: FaultView, scenario: FaultScenario): string[] {
  const { run } = view.results;
  if (scenario.id === 'S7') return restartTable(view, scenario);
  const lines = [`### ${scenario.id}: ${scenario.title}`, ''];
  if (scenario.id === 'S6') {
    lines.push(
      '| contender | client requests | responses | 502 problem+json | upstream attempts | per client request | req/s | p99 ms |',
      '|---|---|---|---|---|---|---|---|',
    );
    for (const row of scenario.rows) {
      const load = view.upstreamLoad(row);
      lines.push(
        `| ${row.label} | ${row.requests} | ${statusList(row)} | ${row.problemJson === null ? '–' : `${row.problemJson}${row.codes !== null && Object.keys(row.codes).length > 0 ? ` (${Object.entries(row.codes).map(([code, n]) => `${code}: ${n}`).join(', ')})` : ''}`} | ${load.attempts} | ${loadRatio(load.ratio)} | ${spreadRps(row.rps)} | ${spreadMs(row.p99)} |`,
      );
    }
    lines.push(
      '',
      ...wrap(
        `Upstream attempts are the requests that reached a replica plus the connection attempts to their closed ports${run.connectsCounted ? ' (SYNs counted with tcpdump on loopback)' : ' (not counted in this run: tcpdump was not available, so only requests are)'}.`,
      ),
      '',
    );
    return lines;
  }
  const bad = faulty(scenario);
  const knocks = run.connectsCounted && (scenario.id === 'S2' || scenario.id === 'S5');
  lines.push(
    `| contender | client requests | non-2xx | socket errors | req/s | p50 ms | p99 ms | requests per replica (1 / 2 / 3) |${knocks ? ` connects to replica ${bad.join(', ')} |` : ''}`,
    `|---|---|---|---|---|---|---|---|${knocks ? '---|' : ''}`,
  );
  for (const row of scenario.rows) {
    const connects = knocks ? ` ${bad.map((i) => row.connects?.[i - 1] ?? 0).join(', ')} |` : '';
    lines.push(
      `| ${row.label} | ${row.requests} | ${row.non2xx} | ${row.errors} | ${spreadRps(row.rps)} | ${ms(row.p50)} | ${spreadMs(row.p99)} | ${perReplica(row.replicas)} |${connects}`,
    );
  }
  lines.push('');
  return lines;
}

function faultTargets(view: FaultView): string[] {
  const rows: string[] = [];
  const add = (target: string, result: string, met: string): void => {
    rows.push(`| ${target} | ${result} | ${met} |`);
  };
  const group = view.row('S1', 'rp');
  const single = view.row('S1', 'rp-single');
  if (group !== undefined && single !== undefined && single.rps.median > 0) {
    const ratio = group.rps.median / single.rps.median;
    add('S1: group of three ≥ 0.95× a single target (req/s)', `${times(ratio)}: ${rps(group.rps.median)} against ${rps(single.rps.median)} req/s`, ratio >= 0.95 ? 'yes' : '**no**');
  }
  const fault: Partial<Record<FaultScenarioId, string>> = { S2: 'one replica refusing', S3: 'one replica answering 503', S5: 'one replica flapping', S7: 'one replica killed, then restarted' };
  for (const id of ['S2', 'S3', 'S5', 'S7'] as const) {
    const row = view.row(id, 'rp');
    if (row === undefined) continue;
    const failed = failures(row);
    add(
      `${id} (${fault[id] ?? ''}): 0 client errors for GETs`,
      failed === 0 ? `0 of ${row.requests}` : `${row.non2xx} non-2xx and ${row.errors} socket errors of ${row.requests} (${share(failed, row.requests)})`,
      failed === 0 ? 'yes' : '**no**',
    );
  }
  const defaultRow = view.row('S4', 'rp');
  const roundRobin = view.balanceRow('S4', 'round-robin');
  const nginx = view.row('S4', 'nginx');
  if (defaultRow !== undefined && roundRobin !== undefined && roundRobin !== defaultRow && roundRobin.p99.median > 0) {
    const ratio = defaultRow.p99.median / roundRobin.p99.median;
    add(
      `S4: p99 of the default balancer (${view.results.run.defaultBalance}) ≤ 0.5× round-robin's`,
      `${ms(defaultRow.p99.median)} ms against ${ms(roundRobin.p99.median)} ms (${times(ratio)})`,
      ratio <= 0.5 ? 'yes' : '**no**',
    );
  }
  if (defaultRow !== undefined && nginx !== undefined) {
    add('S4: p99 of the default balancer below nginx’s', `${ms(defaultRow.p99.median)} ms against ${ms(nginx.p99.median)} ms`, defaultRow.p99.median < nginx.p99.median ? 'yes' : '**no**');
  }
  const down = view.row('S6', 'rp');
  if (down !== undefined) {
    const only502 = Object.keys(down.statuses).every((status) => status === '502');
    const contract = down.errors === 0 && only502 && down.problemJson === down.non2xx && down.non2xx === down.requests;
    add('S6: every answer is the contract (502 application/problem+json)', `${down.problemJson ?? 0} of ${down.requests} (${statusList(down)})`, contract ? 'yes' : '**no**');
    const load = view.upstreamLoad(down);
    add(
      'S6: upstream attempts ≤ 1.2× client requests',
      `${loadRatio(load.ratio)} per client request (${load.attempts} for ${down.requests})${view.results.run.connectsCounted ? '' : '; connection attempts not counted'}`,
      view.results.run.connectsCounted ? (load.ratio <= 1.2 ? 'yes' : '**no**') : 'not measured',
    );
  }
  return ['### The targets, honestly', '', '| target | result | met? |', '|---|---|---|', ...rows, ''];
}

function balanceSection(view: FaultView): string[] {
  const { defaultBalance } = view.results.run;
  const modes = (['least-request', 'round-robin', 'peak-ewma'] as const).flatMap((balance) => {
    const row = view.balanceRow('S4', balance);
    return row === undefined ? [] : [{ balance, row }];
  });
  if (modes.length === 0) return [];
  const lines = [
    '### Which balancer by default (S4)',
    '',
    '| balance | req/s | p50 ms | p99 ms | requests to the slow replica |',
    '|---|---|---|---|---|',
    ...modes.map(({ balance, row }) => {
      const total = row.replicas.reduce((a, b) => a + b, 0);
      const slow = row.replicas[2] ?? 0;
      return `| \`${balance}\`${balance === defaultBalance ? ' (the default)' : ''} | ${spreadRps(row.rps)} | ${ms(row.p50)} | ${spreadMs(row.p99)} | ${slow} of ${total} (${share(slow, total)}) |`;
    }),
    '',
  ];
  const least = modes.find((m) => m.balance === 'least-request')?.row;
  const ewma = modes.find((m) => m.balance === 'peak-ewma')?.row;
  if (least !== undefined && ewma !== undefined && ewma.p99.median > 0 && ewma.rps.median > 0) {
    const p99 = least.p99.median / ewma.p99.median;
    const throughput = least.rps.median / ewma.rps.median;
    let verdict: string;
    if (p99 <= 1.05 && throughput >= 0.95) verdict = `\`least-request\` is equal or better than \`peak-ewma\` here (p99 ${times(p99)}, req/s ${times(throughput)})`;
    else if (p99 > 1.05) verdict = `\`peak-ewma\` is better here: \`least-request\`'s p99 is ${times(p99)} of it (req/s ${times(throughput)})`;
    else verdict = `\`least-request\`'s p99 is level with \`peak-ewma\`'s (${times(p99)}) but it serves ${times(throughput)} the req/s`;
    lines.push(...wrap(`With one replica ${view.results.run.slowMs} ms slower, ${verdict}. The default in the build measured is \`${defaultBalance}\`.`), '');
  }
  return lines;
}

/** Everything between BENCHMARKS.md's fault markers. */
export function faultsBlock(results: FaultResults): string {
  const view = new FaultView(results);
  const { run } = results;
  const seconds = [...new Set(results.scenarios.map((s) => s.seconds))];
  const longest = results.scenarios.find((s) => s.seconds !== results.scenarios[0]?.seconds);
  const runLineParts = [
    `**The run:** ${run.description}`,
    `Node ${run.node}, ${run.machine}; ${run.rounds} interleaved ${run.rounds === 1 ? 'round' : 'rounds'} × ${seconds.length === 1 ? `${seconds[0] ?? 0} s` : `${results.scenarios[0]?.seconds ?? 0} s (${longest?.id ?? ''}: ${longest?.seconds ?? 0} s)`} per contender and scenario, ${run.connections} keep-alive connections, 1 KiB responses; ${run.totalSeconds ?? '?'} s in all.`,
    run.nginx === null ? 'nginx was not installed and is left out.' : `nginx ${run.nginx} was installed and is included.`,
    run.connectsCounted ? 'Connection attempts were counted with tcpdump.' : 'Connection attempts were not counted (no tcpdump).',
  ];
  if (run.otherCpu !== null) {
    runLineParts.push(
      run.otherCpu >= 0.1
        ? `Other processes used ${Math.round(run.otherCpu * 100)} % of the machine's CPU during the run (load average ${run.load[0]} before it): the figures are noisy; read the min–max ranges.`
        : `Other processes used ${Math.round(run.otherCpu * 100)} % of the machine's CPU during the run.`,
    );
  }
  if (run.smoke) runLineParts.unshift('**A smoke run: these figures mean nothing.**');
  const method = [
    `- **Replicas:** three \`node:http\` servers on loopback, one process, one port each, answering \`GET /1k\` with 1 KiB. Each counts the requests it receives. In the faulty scenarios replica 3 misbehaves: its port closed (its connections cut), a 503 for every request, every response ${run.slowMs} ms late, or up and down (closed) every ${run.flapMs / 1000} s from the start of the run, or (S7) killed and restarted once.`,
    `- **Contenders,** each in its own process: resilient-proxy as \`createProxy({ target: [r1, r2, r3], name })\` on bare \`node:http\` (the defaults; \`balance\` is \`${run.defaultBalance}\`), and in S1 with one target; in S4 also with the other \`balance\` modes; nginx with one worker, an \`upstream\` block of the three (default \`max_fails=1 fail_timeout=10s\`, \`keepalive 32\`, HTTP/1.1 with \`Connection ""\`), \`proxy_next_upstream error timeout http_503\`; http-proxy-middleware 3 on Express 5 with a \`router\` cycling through the three (and a keep-alive agent, as in the throughput benchmark).`,
    '- **Fresh state for every run:** before each measured run the contender starts a fresh proxy (nginx: a fresh process) and the replicas take the scenario\'s modes, so each run sees the fault from its first request, learning included. Rounds rotate the order of contenders.',
    '- **Columns:** client requests are responses plus socket errors and timeouts, over all rounds; non-2xx and socket errors are summed over rounds; req/s and latency count every response, whatever its status (median of the rounds, min–max in parentheses); requests per replica are summed over rounds.',
  ];
  return [
    '## Under faults: a group of three replicas',
    '',
    ...wrap(
      'What a group of upstreams does for clients when one replica (or every one) misbehaves, measured by `bench/faults.ts`; its figures come from `bench/results/faults.json`, rendered here by `npm run bench:docs`.',
    ),
    '',
    '```sh',
    `npm run bench:faults     # builds, measures (${run.smoke || run.totalSeconds === null ? 'minutes' : `about ${Math.max(1, Math.round(run.totalSeconds / 60))} minutes`}), writes bench/results/faults.json`,
    'npm run bench:docs       # rewrites this section from it',
    '```',
    '',
    ...wrap(runLineParts.join(' ')),
    '',
    ...method.flatMap((bullet) => wrap(bullet, '  ')),
    '',
    ...results.scenarios.flatMap((scenario) => scenarioTable(view, scenario)),
    ...faultTargets(view),
    ...balanceSection(view),
    ...(run.notes.length === 0 ? [] : ['### Notes', '', ...run.notes.flatMap((note) => wrap(`- ${note}`, '  ')), '']),
  ]
    .join('\n')
    .trimEnd();
}

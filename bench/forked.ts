// Shared by the side-by-side scripts that run their servers as copies of
// themselves (`<script> serve <kind> <target>`): start one and learn its port,
// and take medians of the rounds.

import { fork, type ChildProcess, type ForkOptions } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Forks `script` (an `import.meta.url`) with `args`; resolves once the child sends its port. */
export function startServer(script: string, args: readonly string[], scheme = 'http', options: ForkOptions = {}): Promise<{ child: ChildProcess; url: string }> {
  const child = fork(fileURLToPath(script), [...args], { execArgv: ['--import', 'tsx'], ...options });
  return new Promise((resolve, reject) => {
    child.once('message', (port: number) => resolve({ child, url: `${scheme}://127.0.0.1:${port}` }));
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${String(code)}`)));
  });
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

// The published package: every entry point loads through both `import` and
// `require` (in real Node processes, by the package's own name, from the
// build) and exposes the same names either way.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const root = new URL('..', import.meta.url);
const manifest = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { exports: Record<string, unknown> };
const entries = Object.keys(manifest.exports)
  .filter((key) => key !== './package.json')
  .map((key) => key.replace(/^\./, 'resilient-proxy'));

function namesVia(kind: 'import' | 'require', entry: string): string[] {
  const script =
    kind === 'import'
      ? `const m = await import(${JSON.stringify(entry)}); console.log(JSON.stringify(Object.keys(m).filter((k) => k !== 'default').sort()));`
      : `const m = require(${JSON.stringify(entry)}); console.log(JSON.stringify(Object.keys(m).sort()));`;
  const args = kind === 'import' ? ['--input-type=module', '-e', script] : ['-e', script];
  const output = execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' });
  return JSON.parse(output) as string[];
}

describe('the built package', () => {
  it('has the four entry points', () => {
    expect(entries).toStrictEqual(['resilient-proxy', 'resilient-proxy/fastify', 'resilient-proxy/koa', 'resilient-proxy/testing']);
  });

  it.each(entries)('%s exposes the same names to import and require', (entry) => {
    const imported = namesVia('import', entry);
    expect(imported.length).toBeGreaterThan(0);
    expect(namesVia('require', entry)).toStrictEqual(imported);
  });

  it('exposes createProxy, fastifyProxy, koaProxy and startFaultUpstream where documented', () => {
    expect(namesVia('import', 'resilient-proxy')).toContain('createProxy');
    expect(namesVia('require', 'resilient-proxy/fastify')).toStrictEqual(['fastifyProxy']);
    expect(namesVia('require', 'resilient-proxy/koa')).toStrictEqual(['koaProxy']);
    expect(namesVia('import', 'resilient-proxy/testing')).toContain('startFaultUpstream');
  });
});

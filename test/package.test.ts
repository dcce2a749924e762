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
  it('has the six entry points', () => {
    expect(entries).toStrictEqual(['resilient-proxy', 'resilient-proxy/fastify', 'resilient-proxy/koa', 'resilient-proxy/testing', 'resilient-proxy/otel', 'resilient-proxy/redis']);
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
    expect(namesVia('import', 'resilient-proxy')).toContain('DIAGNOSTICS_CHANNELS');
    expect(namesVia('require', 'resilient-proxy/otel')).toStrictEqual(['BREAKER_STATE_VALUES', 'INSTRUMENTATION_NAME', 'METRICS', 'ResilientProxyInstrumentation']);
    expect(namesVia('import', 'resilient-proxy/redis')).toStrictEqual(['REDIS_STALE_DEFAULTS', 'RedisStaleStore']);
  });

  it('loads the main entry without OpenTelemetry: the OpenTelemetry packages are optional peers, needed only by resilient-proxy/otel', () => {
    const script = `const loaded = []; const Module = require('node:module'); const load = Module._load;
Module._load = function (request, ...rest) { if (request.startsWith('@opentelemetry/')) loaded.push(request); return load.call(this, request, ...rest); };
require('resilient-proxy'); console.log(JSON.stringify(loaded));`;
    expect(JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: root, encoding: 'utf8' }))).toStrictEqual([]);
  });

  it('declares @opentelemetry/api and @opentelemetry/instrumentation as optional peers, and VERSION is the package version', async () => {
    const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as {
      version: string;
      peerDependencies: Record<string, string>;
      peerDependenciesMeta: Record<string, { optional?: boolean }>;
    };
    for (const name of ['@opentelemetry/api', '@opentelemetry/instrumentation']) {
      expect(pkg.peerDependencies[name]).toBeTypeOf('string');
      expect(pkg.peerDependenciesMeta[name]).toStrictEqual({ optional: true });
    }
    const { VERSION } = await import('../src/version.js');
    expect(VERSION).toBe(pkg.version);
  });
});

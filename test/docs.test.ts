// The docs cannot go stale silently: every TypeScript block in README.md and
// docs/*.md is type-checked against the source, as a module of its own, and
// every relative link in the Markdown files resolves to a file and a heading.
// A block that cannot be checked here (it needs a package this repository does
// not install) is preceded by `<!-- docs:no-check: why -->`.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const GUIDES = readdirSync(join(ROOT, 'docs')).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`);
const CHECKED = ['README.md', ...GUIDES];
const LINKED = [...CHECKED, 'SECURITY.md', 'RELIABILITY.md', 'BENCHMARKS.md', 'CHANGELOG.md'];

// What the fragments take as given: an app, a target, your own logger and clients.
const AMBIENT = `
declare const app: import('express').Express;
declare const target: string;
declare const proxy: import('resilient-proxy').ResilientProxy;
declare const redis: import('ioredis').Redis;
declare const log: { warn(object: object, message: string): void };
declare const stats: { record(...values: unknown[]): void };
declare const tokens: { get(): Promise<string> };
declare function redact(value: unknown): unknown;
declare function currentTenant(): string;
declare const it: typeof import('vitest').it;
declare const expect: typeof import('vitest').expect;
`;

interface Block {
  readonly file: string;
  readonly line: number;
  readonly code: string;
}

function tsBlocks(file: string): Block[] {
  const lines = readFileSync(join(ROOT, file), 'utf8').split('\n');
  const blocks: Block[] = [];
  for (let index = 0; index < lines.length; index += 1) {
    if (lines[index] !== '```ts') continue;
    const skipped = lines[index - 1]?.startsWith('<!-- docs:no-check') === true;
    const start = index + 1;
    let end = start;
    while (end < lines.length && lines[end] !== '```') end += 1;
    if (!skipped) blocks.push({ file, line: start + 1, code: lines.slice(start, end).join('\n') });
    index = end;
  }
  return blocks;
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
function slug(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N}_\- ]/gu, '').replaceAll(' ', '-');
}

function anchors(file: string): Set<string> {
  const text = readFileSync(join(ROOT, file), 'utf8').replace(/```[\s\S]*?```/g, '');
  const seen = new Map<string, number>();
  const found = new Set<string>();
  for (const [, heading = ''] of text.matchAll(/^#{1,6} (.*)$/gm)) {
    const base = slug(heading);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    found.add(count === 0 ? base : `${base}-${count}`);
  }
  return found;
}

describe('docs', () => {
  it('every relative link resolves to a file, and every #anchor to a heading in it', () => {
    const broken: string[] = [];
    for (const file of LINKED) {
      const text = readFileSync(join(ROOT, file), 'utf8').replace(/```[\s\S]*?```/g, '');
      for (const [, link = ''] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(link)) continue;
        const [path = '', fragment] = link.split('#');
        const target = path === '' ? file : normalize(join(dirname(file), path));
        if (!existsSync(join(ROOT, target))) broken.push(`${file}: ${link} (no ${target})`);
        else if (fragment !== undefined && target.endsWith('.md') && !anchors(target).has(fragment)) broken.push(`${file}: ${link} (no heading #${fragment})`);
      }
    }
    expect(broken).toEqual([]);
  });

  it('every test a promise cites exists: each quoted name after a test file is in that file', () => {
    const flat = (text: string): string => text.replace(/\s+/g, ' ').replaceAll('’', "'").replaceAll("\\'", "'");
    const missing: string[] = [];
    let cited = 0;
    for (const file of LINKED) {
      const text = flat(readFileSync(join(ROOT, file), 'utf8'));
      for (const match of text.matchAll(/(?:test|examples)\/[\w/.-]+\.test\.ts/g)) {
        const testFile = join(ROOT, match[0]);
        if (!existsSync(testFile)) {
          missing.push(`${file}: ${match[0]} does not exist`);
          continue;
        }
        const source = flat(readFileSync(testFile, 'utf8'));
        // The names that follow: "a", "b" and "c", or `a`, or › "a" (… stands for an elided part).
        let rest = text.slice(match.index + match[0].length).replace(/^`/, '');
        for (;;) {
          const name = /^[\s,;›(:]*(?:and\s+|or\s+|tests?:\s*)?(?:"([^"]+)"|`([^`]+)`|“([^”]+)”)/.exec(rest);
          if (name === null) break;
          rest = rest.slice(name[0].length);
          const quoted = name[1] ?? name[2] ?? name[3] ?? '';
          if (/\.test\.ts$/.test(quoted)) break;
          cited += 1;
          const parts = quoted.split(/…|\.\.\./).map((part) => part.trim().replace(/^:\s*|:$/g, '')).filter((part) => part.length > 6);
          if (parts.length === 0 || !parts.every((part) => source.includes(part))) missing.push(`${file}: ${match[0]} › "${quoted}"`);
        }
      }
    }
    expect(cited).toBeGreaterThan(60);
    expect(missing).toEqual([]);
  });

  it('every TypeScript block in README.md and docs/ type-checks against the source', () => {
    const blocks = CHECKED.flatMap(tsBlocks);
    expect(blocks.length).toBeGreaterThan(25);
    // Beside the examples, so a block may import one of them as `./x.js`.
    const virtual = new Map<string, string>(blocks.map((block) => [
      join(ROOT, 'examples', `__docs__${block.file.replaceAll('/', '_')}_${block.line}.ts`),
      `${block.code}\nexport {};\n`,
    ]));
    const ambient = join(ROOT, 'examples', '__docs__ambient.d.ts');
    virtual.set(ambient, AMBIENT);

    const config = ts.getParsedCommandLineOfConfigFile(join(ROOT, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => undefined });
    if (config === undefined) throw new Error('tsconfig.json could not be read');
    const host = ts.createCompilerHost(config.options);
    const getSourceFile = host.getSourceFile.bind(host);
    host.getSourceFile = (name, language, ...rest) => {
      const text = virtual.get(normalize(name));
      return text === undefined ? getSourceFile(name, language, ...rest) : ts.createSourceFile(name, text, language);
    };
    const fileExists = host.fileExists.bind(host);
    host.fileExists = (name) => virtual.has(normalize(name)) || fileExists(name);
    const program = ts.createProgram([...virtual.keys()], config.options, host);

    const errors = [...virtual.keys()].flatMap((name) => {
      const source = program.getSourceFile(name);
      if (source === undefined) return [`${name}: not compiled`];
      const block = blocks.find((candidate) => name.endsWith(`__docs__${candidate.file.replaceAll('/', '_')}_${candidate.line}.ts`));
      return [...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source)].map((diagnostic) => {
        const { line } = diagnostic.start === undefined ? { line: 0 } : source.getLineAndCharacterOfPosition(diagnostic.start);
        const where = block === undefined ? relative(ROOT, name) : `${block.file}:${block.line + line}`;
        return `${where}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')}`;
      });
    });
    expect(errors).toEqual([]);
  }, 120_000);
});

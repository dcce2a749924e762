// The checks every option module uses, so that each bad option reads the
// same: a TypeError naming the option, what was expected and what was given.

import { migrationHint, MIGRATION_GUIDE } from './migration.js';

export const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

export function fail(option: string, expected: string, value: unknown): never {
  throw new TypeError(`Expected \`${option}\` to be ${expected}, got ${describe(value)}.`);
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function checkKeys(option: string, value: Record<string, unknown>, allowed: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      // A key that is not a plain name is shown quoted, so the message stays readable.
      const shown = /^[\w$]+$/.test(key) ? key : JSON.stringify(key);
      const path = option === '' ? shown : `${option}.${shown}`;
      // Another proxy's option (`on: { proxyReq }`): the most specific hint.
      const nested = value[key];
      const inner = isPlainObject(nested) ? Object.keys(nested).map((sub) => `${path}.${sub}`).find((sub) => migrationHint(sub) !== null) : undefined;
      const hinted = inner ?? path;
      const hint = migrationHint(hinted);
      if (hint !== null) throw new TypeError(`Unknown option \`${hinted}\` → here: ${hint}. See the migration guide (${MIGRATION_GUIDE}).`);
      throw new TypeError(`Unknown option \`${path}\`. Known options: ${allowed.join(', ')}.`);
    }
  }
}

export function duration(option: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 2_147_483_647) {
    fail(option, 'a non-negative finite number of milliseconds (0 turns it off)', value);
  }
  return value;
}

export function positive(option: string, value: unknown, fallback: number, expected: string, check: (n: number) => boolean): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || !check(value)) fail(option, expected, value);
  return value;
}

export function optionalString(option: string, value: unknown, pattern: RegExp, expected: string): string | null {
  if (value === undefined) return null;
  if (typeof value !== 'string' || !pattern.test(value)) fail(option, expected, value);
  return value;
}

export function optionalBoolean(option: string, value: unknown): boolean | undefined {
  if (value !== undefined && typeof value !== 'boolean') fail(option, 'a boolean', value);
  return value;
}

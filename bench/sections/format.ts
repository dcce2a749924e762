// Formatters shared by the section renderers: a figure reads the same wherever it appears.

export const fixed = (digits: number) => (value: number): string => value.toFixed(digits);
export const rps = fixed(0);
export const micros = (value: number): string => `${value.toFixed(1)} µs`;
export const mib = (value: number): string => value.toFixed(1);
export const ms = (value: number): string => (Number.isInteger(value) ? String(value) : value.toFixed(1));
export const times = (value: number): string => `${value.toFixed(2)}×`;
export const refusalTimes = (value: number): string => `${value.toFixed(1)}×`;
export const perRequest = fixed(3);

export function bytesLabel(bytes: number): string {
  if (bytes >= 1024 ** 3 && bytes % 1024 ** 3 === 0) return `${bytes / 1024 ** 3} GiB`;
  if (bytes >= 1024 ** 2 && bytes % 1024 ** 2 === 0) return `${bytes / 1024 ** 2} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}

/** "a, b and c" */
export function list(items: readonly string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items.at(-1) ?? ''}`;
}

/** Ahead, level or behind, with 5 % either way counted as level. */
export function standing(ratio: number): 'ahead' | 'level' | 'behind' {
  if (ratio >= 1.05) return 'ahead';
  if (ratio <= 0.95) return 'behind';
  return 'level';
}

/** Hard-wraps prose at about 80 columns, as the rest of the docs are. */
export function wrap(text: string, indent = ''): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > 80) {
      lines.push(line);
      line = indent + word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(line);
  return lines;
}

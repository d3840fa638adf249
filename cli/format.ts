/** Text for people: tables, money, instants and durations. `--json` output never passes through here. */

/** Columns padded to their widest cell; the header is the first row. */
export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((row) => (row[i] ?? '').length)));
  return all.map((row) => row.map((cell, i) => (cell ?? '').padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/** Label/value lines, values aligned. Rows with an undefined value are left out. */
export function fields(rows: [string, string | undefined][]): string {
  const kept = rows.filter((row): row is [string, string] => row[1] !== undefined);
  const width = Math.max(...kept.map(([label]) => label.length));
  return kept.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n');
}

/** Sub-cent amounts keep four decimals: a simulated step costs fractions of a cent. */
export function money(usd: number): string {
  return `$${usd.toFixed(Math.abs(usd) < 1 ? 4 : 2)}`;
}

/** An instant as UTC to the second, or '-' when absent. */
export function when(value: string | Date | null | undefined): string {
  if (value === null || value === undefined) return '-';
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return `${date.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

/** 42s, 3m 05s, 2h 10m, 3d 4h. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}

export function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, Math.max(0, max - 1))}…`;
}

/** Machines get one line of JSON, exactly what the API answered. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

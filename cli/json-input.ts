import { readFileSync } from 'node:fs';
import { UsageError } from './exit-codes';

/** JSON the user gave: a file or a flag's value. Anything unreadable is their mistake to fix (exit 2). */

export function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${what}: not valid JSON (${err instanceof Error ? err.message : String(err)})`);
  }
}

export function readJsonFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return parseJson(text, path);
}

/**
 * Text that Postgres can store. A `text` column refuses NUL and `jsonb` refuses unpaired UTF-16
 * surrogates, so a string carrying either, once it reaches a write, fails that write on every retry.
 * The API refuses such input at the door; workflow code cannot refuse a signal, so it repairs it.
 */

const NUL = /\u0000/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why `text` cannot be stored as it is, or null when it can. */
export function unsafeTextReason(text: string): string | null {
  if (NUL.test(text)) return 'contains a NUL character';
  if (LONE_SURROGATE.test(text)) return 'contains an unpaired UTF-16 surrogate';
  return null;
}

/** The first string inside `value` (any JSON) that cannot be stored, with its path; null when none. */
export function findUnsafeText(value: unknown, path = ''): { path: string; reason: string } | null {
  if (typeof value === 'string') {
    const reason = unsafeTextReason(value);
    return reason ? { path: path || 'value', reason } : null;
  }
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) {
      const found = findUnsafeText(item, `${path}[${i}]`);
      if (found) return found;
    }
    return null;
  }
  if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      const keyPath = path ? `${path}.${key}` : key;
      const reason = unsafeTextReason(key);
      if (reason) return { path: keyPath, reason: `has a key that ${reason}` };
      const found = findUnsafeText(item, keyPath);
      if (found) return found;
    }
  }
  return null;
}

/**
 * `value` as storable text of at most `maxLength` characters: non-strings become absent, NUL and
 * unpaired surrogates become U+FFFD. Cutting never splits a surrogate pair.
 */
export function toSafeText(value: unknown, maxLength: number): string | undefined {
  if (typeof value !== 'string') return undefined;
  const repaired = value.replace(new RegExp(`${NUL.source}|${LONE_SURROGATE.source}`, 'g'), '\uFFFD');
  if (repaired.length <= maxLength) return repaired;
  const cut = /[\uD800-\uDBFF]/.test(repaired[maxLength - 1]!) ? maxLength - 1 : maxLength;
  return repaired.slice(0, cut);
}

/**
 * Text the system refuses to accept: what Postgres cannot store as given. A `text` column rejects
 * NUL, and `jsonb` rejects both NUL and a UTF-16 surrogate without its partner (JavaScript strings
 * may hold one; JSON.parse makes one from "\ud800"). Let in, either fails a write later — a 500 at
 * the API, or an activity that retries forever. Every other code point, control characters such as
 * tab, newline or ESC included, is data a prompt may legitimately carry and stays allowed.
 */

const NUL = '\u0000';

/** Why `s` cannot be accepted, as the end of a sentence ("contains a NUL character"), or null. */
export function unsafeTextReason(s: string): string | null {
  if (s.includes(NUL)) return 'contains a NUL character';
  // Well-formed UTF-16: every surrogate in its pair.
  if (!s.isWellFormed()) return 'contains an unpaired surrogate';
  return null;
}

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

/** Where a value sits: its parent's place and its key there. Paths are spelled out only when reported. */
interface Place {
  parent: Place | null;
  key: string | number;
}

/** `plan[0].input.prompt`; a key that is no identifier is quoted (`input["a b"]`), escaped by JSON. */
function spell(place: Place | null, root: string): string {
  const keys: (string | number)[] = [];
  for (let at = place; at; at = at.parent) keys.push(at.key);
  let path = root;
  for (const key of keys.reverse()) {
    if (typeof key === 'number') path = `${path}[${key}]`;
    else if (IDENTIFIER.test(key)) path = path ? `${path}.${key}` : key;
    else path = `${path}[${JSON.stringify(key)}]`;
  }
  return path;
}

/**
 * The first string or object key inside `value` that `unsafeTextReason` refuses, as a sentence
 * naming where it is (`plan[0].input.prompt contains a NUL character`), or null. `root` names
 * `value` itself ('' for a request body, whose fields are named from the top).
 *
 * Walks with an explicit stack, not recursion: a parsed body may nest far deeper than the call stack.
 */
export function findUnsafeText(value: unknown, root = ''): string | null {
  const pending: { value: unknown; place: Place | null }[] = [{ value, place: null }];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const { value: current, place } = next;
    if (typeof current === 'string') {
      const reason = unsafeTextReason(current);
      if (reason) return `${spell(place, root) || 'the value'} ${reason}`;
    } else if (Array.isArray(current)) {
      // Pushed in reverse so the first offending element is the one reported.
      for (let i = current.length - 1; i >= 0; i -= 1) pending.push({ value: current[i], place: { parent: place, key: i } });
    } else if (current !== null && typeof current === 'object') {
      const entries = Object.entries(current);
      for (const [key] of entries) {
        // A key is not echoed: quoting it would carry the very character refused.
        const reason = unsafeTextReason(key);
        if (reason) return `a key in ${spell(place, root) || 'the top level'} ${reason}`;
      }
      for (let i = entries.length - 1; i >= 0; i -= 1) {
        const [key, child] = entries[i]!;
        pending.push({ value: child, place: { parent: place, key } });
      }
    }
  }
  return null;
}

/**
 * `value` as storable text of at most `maxLength` characters, for text that cannot be refused (a
 * signal's payload, a provider's answer): non-strings become absent, NUL and unpaired surrogates
 * become U+FFFD. Cutting never splits a surrogate pair.
 */
export function toSafeText(value: unknown, maxLength: number): string | undefined {
  if (typeof value !== 'string') return undefined;
  const repaired = value.toWellFormed().replaceAll(NUL, '\uFFFD');
  if (repaired.length <= maxLength) return repaired;
  const cut = /[\uD800-\uDBFF]/.test(repaired[maxLength - 1]!) ? maxLength - 1 : maxLength;
  return repaired.slice(0, cut);
}

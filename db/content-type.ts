import type { OutputContentType } from '../core/outputs';

/** JSON when it parses as an object or array, so a reference's pointer can look inside; text otherwise. */
export function contentTypeOf(text: string): OutputContentType {
  const first = text.trimStart()[0];
  if (first !== '{' && first !== '[') return 'text/plain';
  try {
    JSON.parse(text);
    return 'application/json';
  } catch {
    return 'text/plain';
  }
}

/**
 * Text a tenant, a provider or a model wrote, made safe to put into what the Temporal Web UI
 * renders as Markdown: a run's current details and its static summary and details. The UI renders
 * them (its `/render` route, gomarkdown with its common extensions: raw HTML, autolinks, tables,
 * inline `$…$` math, strikethrough, SmartyPants) so, given as is, `**x**` is bold, `[a](u)` a link,
 * `![a](u)` an image the operator's browser fetches, `<b>` a tag and `$1 … $2` math.
 *
 * `asLiteralText` returns text that renders as exactly the characters it was given:
 *
 * - every character the renderer gives a meaning to inline is escaped with a backslash —
 *   `\` `` ` `` `*` `_` `{` `}` `[` `]` `(` `)` `#` `+` `-` `.` `!` `|` `<` `>` `~` `$` and, for
 *   HTML, `&`; with `:` (so no `http://…` becomes an autolink) and `^` (superscript). Each is ASCII
 *   punctuation, which CommonMark lets a backslash escape too, and in gomarkdown's escape set;
 * - line breaks (CR, LF, CRLF, VT, FF, NEL, U+2028, U+2029) become one space each: the text stays on
 *   the line it was put on, so nothing in it can start a block (heading, list, quote, code, table).
 *
 * Only the values are passed through it, never the Markdown we write around them (`**PAUSED**`).
 * The renderer's SmartyPants may still curl a straight quote or set `1/2` as a fraction: neither
 * character has a backslash escape in gomarkdown, and neither makes markup, a link or a fetch.
 * Pure and deterministic: workflow code calls it.
 */

const SIGNIFICANT = /[\\`*_{}[\]()#+\-.!|<>~$&:^]/g;
const LINE_BREAK = /\r\n|[\n\r\v\f\u0085\u2028\u2029]/g;

/** `s` as literal text in the Temporal Web UI's Markdown. */
export function asLiteralText(s: string): string {
  return s.replace(LINE_BREAK, ' ').replace(SIGNIFICANT, (c) => `\\${c}`);
}

import { describe, expect, it } from 'vitest';
import { findUnsafeText, toSafeText, unsafeTextReason } from '../../core/text-safety';

describe('unsafeTextReason', () => {
  it.each([
    ['plain text', null],
    ['', null],
    ['tab\t newline\n return\r escape\u001b bell\u0007 delete\u007f', null],
    ['right-to-left \u202e mark \u200f', null],
    ['astral 😀 𝄞 (surrogate pairs)', null],
    ['\uFFFE\uFFFF noncharacters', null],
    ['a\u0000b', 'contains a NUL character'],
    ['\u0000', 'contains a NUL character'],
    ['lone high \uD800 surrogate', 'contains an unpaired surrogate'],
    ['lone low \uDC00 surrogate', 'contains an unpaired surrogate'],
    ['high at the end \uD83D', 'contains an unpaired surrogate'],
    ['low at the start \uDE00', 'contains an unpaired surrogate'],
    ['swapped pair \uDE00\uD83D', 'contains an unpaired surrogate'],
    ['two highs \uD83D\uD83D\uDE00', 'contains an unpaired surrogate'],
  ])('%j → %s', (text, reason) => {
    expect(unsafeTextReason(text)).toBe(reason);
  });
});

describe('findUnsafeText', () => {
  it('names the path of the first refused string', () => {
    const body = { plan: [{ skill: 'sim.llm', input: { prompt: 'fine' } }, { skill: 'sim.llm', input: { prompt: 'x\u0000' } }] };
    expect(findUnsafeText(body)).toBe('plan[1].input.prompt contains a NUL character');
  });

  it('reports in document order', () => {
    expect(findUnsafeText({ a: ['ok', '\uD800'], b: '\u0000' })).toBe('a[1] contains an unpaired surrogate');
  });

  it('quotes keys that are not identifiers, escaped', () => {
    expect(findUnsafeText({ 'odd key': { 'k"2': '\u0000' } })).toBe('["odd key"]["k\\"2"] contains a NUL character');
  });

  it('refuses a key without echoing it', () => {
    expect(findUnsafeText({ input: { 'a\u0000b': 1 } })).toBe('a key in input contains a NUL character');
    expect(findUnsafeText({ '\uDC00': 1 })).toBe('a key in the top level contains an unpaired surrogate');
  });

  it('names a root, and passes safe values of every JSON type', () => {
    expect(findUnsafeText(['a', '\u0000'], 'query parameter status')).toBe('query parameter status[1] contains a NUL character');
    expect(findUnsafeText('\u0000', 'header x')).toBe('header x contains a NUL character');
    expect(findUnsafeText({ n: 1, b: true, z: null, s: 'ok', a: [[], {}], u: undefined })).toBeNull();
  });

  it('walks a body nested deeper than the call stack', () => {
    const depth = 200_000;
    const deep = JSON.parse(`${'['.repeat(depth)}"\\u0000"${']'.repeat(depth)}`);
    expect(findUnsafeText(deep)).toMatch(/^\[0\]\[0\].*\[0\] contains a NUL character$/);
    expect(findUnsafeText(JSON.parse(`${'['.repeat(depth)}${']'.repeat(depth)}`))).toBeNull();
  });
});

describe('toSafeText', () => {
  it('repairs what Postgres refuses and keeps everything else', () => {
    expect(toSafeText('a\u0000b', 50)).toBe('a\uFFFDb');
    expect(toSafeText('x\uD83Dy\uDE00z', 50)).toBe('x\uFFFDy\uFFFDz');
    expect(toSafeText('ok \uD83D\uDE00 tab\tnew\nline', 50)).toBe('ok \uD83D\uDE00 tab\tnew\nline');
    expect(unsafeTextReason(toSafeText('\u0000\uDC00\uD800', 10)!)).toBeNull();
  });

  it('drops non-strings and cuts without splitting a surrogate pair', () => {
    expect(toSafeText(42, 10)).toBeUndefined();
    expect(toSafeText(['x'], 10)).toBeUndefined();
    expect(toSafeText('ab\uD83D\uDE00', 3)).toBe('ab');
    expect(toSafeText('abcdef', 3)).toBe('abc');
  });
});

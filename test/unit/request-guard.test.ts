import { describe, expect, it } from 'vitest';
import { nestsDeeperThan } from '../../api/request-guard';

describe('nestsDeeperThan', () => {
  it.each([
    ['"flat"', 0, false],
    ['{}', 0, true],
    ['{}', 1, false],
    ['{"a":[{"b":1}]}', 3, false],
    ['{"a":[{"b":1}]}', 2, true],
    ['[[],[[]],[]]', 3, false],
    ['[[],[[[]]],[]]', 3, true],
  ])('%s deeper than %i: %s', (json, limit, deeper) => {
    expect(nestsDeeperThan(JSON.parse(json), limit)).toBe(deeper);
  });

  it('answers for a nesting deeper than the call stack', () => {
    expect(nestsDeeperThan(JSON.parse(`${'['.repeat(200_000)}${']'.repeat(200_000)}`), 32)).toBe(true);
  });
});

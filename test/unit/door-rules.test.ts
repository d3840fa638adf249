import { describe, expect, it } from 'vitest';
import { addressBucket } from '../../api/auth-throttle';
import { findProtoKey } from '../../api/request-guard';
import { authorizeRun, submitRefusal } from '../../core/authorization';
import { DEFAULT_POLICY } from '../../core/policy';
import { pauseRequestFrom } from '../../workflows/messages';

describe('findProtoKey', () => {
  it.each([
    ['{"a":1}', null],
    ['{"a":"__proto__","__proto___":1,"b":["__proto__"]}', null],
    ['{"__proto__":1}', '__proto__'],
    ['{"plan":[{"input":{"x":1}},{"input":{"__proto__":{}}}]}', 'plan[1].input.__proto__'],
    ['[{"a b":{"__proto__":null}}]', '[0]["a b"].__proto__'],
    ['{"constructor":{"prototype":{}}}', null],
  ])('%s → %s', (json, found) => {
    expect(findProtoKey(JSON.parse(json))).toBe(found);
  });

  it('walks a body deeper than the call stack', () => {
    expect(findProtoKey(JSON.parse(`${'['.repeat(100_000)}{"__proto__":1}${']'.repeat(100_000)}`))).toMatch(/^(\[0\]){100000}\.__proto__$/);
  });
});

describe('addressBucket', () => {
  it.each([
    ['127.0.0.2', '127.0.0.2'],
    ['::ffff:10.1.2.3', '10.1.2.3'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::99', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002:ffff::1', '2001:db8:1:2::/64'],
    ['::1', '0:0:0:0::/64'],
    [undefined, 'unknown'],
  ])('%s counts as %s', (address, bucket) => {
    expect(addressBucket(address)).toBe(bucket);
  });
});

describe('who may submit', () => {
  it('refuses a viewer at the door and lets admins and members through to authorization', () => {
    expect(submitRefusal('viewer')).toMatch(/^role 'viewer' may not start runs \(needs admin or member\)/);
    expect(submitRefusal('admin')).toBeNull();
    expect(submitRefusal('member')).toBeNull();
    // Still denied as a second line, should a viewer ever reach authorization.
    expect(authorizeRun({ role: 'viewer', tenantStatus: 'active', policy: DEFAULT_POLICY, plan: [], budgetUsd: 1 }).decision).toBe('DENIED');
  });
});

describe("a pause signal's allowed authorities", () => {
  it.each([
    [['SYSTEM_AUTO'], ['SYSTEM_AUTO', 'TENANT_ADMIN', 'FOUNDER_ONLY']],
    [['TENANT_USER', 'TENANT_USER'], ['TENANT_USER', 'TENANT_ADMIN', 'FOUNDER_ONLY']],
    [['FOUNDER_ONLY', 'TENANT_ADMIN'], ['FOUNDER_ONLY', 'TENANT_ADMIN']],
    [['NOBODY'], undefined],
    [[], undefined],
  ])('%j → %j', (named, kept) => {
    expect(pauseRequestFrom({ allowedAuthorities: named }).allowedAuthorities).toEqual(kept);
  });
});

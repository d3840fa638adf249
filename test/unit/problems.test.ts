import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { controlRefusal } from '../../api/control-refusals';
import { HttpError } from '../../api/errors';
import { PROBLEMS, problemBody } from '../../api/problems';
import { authoritiesInWords, stateForTenant, withAuthoritiesInWords } from '../../core/authority-words';
import { DEFAULT_POLICY, samePolicyRules } from '../../core/policy';
import { RESUME_AUTHORITIES } from '../../core/policy-check';

describe('a problem', () => {
  it('has the standard members, keeps `error`, and its own fields cannot replace them', () => {
    expect(problemBody('RUN_NOT_FOUND', 'run x not found', { status: 'resolved', runId: 'x' })).toEqual({
      type: 'https://governed.dev/problems/run-not-found',
      title: PROBLEMS.RUN_NOT_FOUND.title,
      status: 404,
      detail: 'run x not found',
      code: 'RUN_NOT_FOUND',
      error: 'run x not found',
      runId: 'x',
    });
  });

  it('takes its status from its code, or its general code from a bare status', () => {
    expect(new HttpError('SIGNAL_LIMIT_REACHED', 'x')).toMatchObject({ status: 409, code: 'SIGNAL_LIMIT_REACHED' });
    expect(new HttpError(409, 'x')).toMatchObject({ status: 409, code: 'CONFLICT' });
    expect(new HttpError(400, 'x')).toMatchObject({ status: 400, code: 'VALIDATION_FAILED' });
  });
});

describe("the run's refusals of a resume, as a tenant reads them", () => {
  const refusedBy = (type: string, message: string, details?: Record<string, unknown>) =>
    ApplicationFailure.create({ type, message, nonRetryable: true, ...(details ? { details: [details] } : {}) });

  it('each cause has its code, taken from the failure the run threw, never from its wording', () => {
    expect(controlRefusal(refusedBy('RUN_NOT_PAUSED', 'run is not paused (phase EXECUTING)')).code).toBe('RUN_NOT_PAUSED');
    expect(controlRefusal(refusedBy('APPROVAL_MISMATCH', 'any words at all')).code).toBe('APPROVAL_MISMATCH');
    expect(controlRefusal(refusedBy('NOT_AWAITING_APPROVAL', 'only a tool approval can be denied')).code).toBe('NOT_AWAITING_APPROVAL');
    expect(controlRefusal(refusedBy('PAUSE_NOT_TAGGED', "the run's pause (MANUAL_PAUSE) was not set by 'tenant-pause'")).code).toBe('CONTROL_REFUSED');
    expect(controlRefusal(refusedBy('NO_AUTHORITY', 'a resume must name its authority')).code).toBe('RESUME_NOT_ALLOWED');
    // A worker of an earlier release refused with a plain error: the sentence, with no code of its own.
    expect(controlRefusal(new Error('run is not paused (phase EXECUTING)'))).toMatchObject({ code: 'CONTROL_REFUSED', message: 'run is not paused (phase EXECUTING)' });
    expect(controlRefusal(refusedBy('SOMETHING_NEW', 'x')).code).toBe('CONTROL_REFUSED');
  });

  it('never with the internal authority names', () => {
    const refused = controlRefusal(
      refusedBy('AUTHORITY_NOT_ALLOWED', 'authority TENANT_USER/API_KEY_OWNER may not resume a POLICY_CHANGE pause (allowed: TENANT_ADMIN, FOUNDER_ONLY)', {
        held: ['TENANT_USER', 'API_KEY_OWNER'],
        pauseReason: 'POLICY_CHANGE',
        allowed: ['TENANT_ADMIN', 'FOUNDER_ONLY'],
      }),
    );
    expect(refused).toMatchObject({ status: 409, code: 'RESUME_NOT_ALLOWED' });
    expect(refused.message).toBe('this key (a member key) may not resume a POLICY_CHANGE pause: only an admin key or the service operator may');
    const unnamed = controlRefusal(refusedBy('NO_AUTHORITY', `a resume must name its authority (one of ${RESUME_AUTHORITIES.join(', ')})`));
    expect(unnamed.code).toBe('RESUME_NOT_ALLOWED');
    expect(unnamed.message).not.toMatch(/FOUNDER_ONLY|SYSTEM_AUTO|TENANT_/);
    expect(withAuthoritiesInWords('resume by SYSTEM_AUTO, FOUNDER_ONLY')).toBe('resume by the service itself, the service operator');
    expect(authoritiesInWords(['TENANT_ADMIN', 'FOUNDER_ONLY', 'TENANT_ADMIN'])).toEqual(['an admin key', 'the service operator']);
  });

  it("a live state's pause says who may resume it in words, and only there", () => {
    const shown = stateForTenant({ runId: 'r', pause: { reason: 'MANUAL_PAUSE', allowedAuthorities: ['TENANT_USER', 'FOUNDER_ONLY'] } });
    expect(shown).toEqual({ runId: 'r', pause: { reason: 'MANUAL_PAUSE', resumableBy: ['a member key', 'the service operator'] } });
    expect(stateForTenant({ runId: 'r', pause: null })).toEqual({ runId: 'r', pause: null });
  });
});

describe('two policies are the same', () => {
  it('whatever the order of their rules, with a defaulted rule left out; not when one rule differs', () => {
    const { pauseOnThreshold: _defaulted, ...withoutDefault } = DEFAULT_POLICY;
    const reordered = Object.fromEntries(Object.entries(withoutDefault).reverse()) as typeof DEFAULT_POLICY;
    expect(samePolicyRules(DEFAULT_POLICY, reordered)).toBe(true);
    expect(samePolicyRules(DEFAULT_POLICY, { ...DEFAULT_POLICY, maxSteps: DEFAULT_POLICY.maxSteps + 1 })).toBe(false);
    expect(samePolicyRules(DEFAULT_POLICY, { ...DEFAULT_POLICY, allowedSkills: [...DEFAULT_POLICY.allowedSkills].reverse() })).toBe(DEFAULT_POLICY.allowedSkills.length < 2);
    expect(samePolicyRules(DEFAULT_POLICY, { ...DEFAULT_POLICY, tools: { ...DEFAULT_POLICY.tools, maxCallsPerRun: 7 } })).toBe(false);
  });
});

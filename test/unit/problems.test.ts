import { describe, expect, it } from 'vitest';
import { controlRefusal } from '../../api/control-refusals';
import { HttpError } from '../../api/errors';
import { PROBLEMS, problemBody } from '../../api/problems';

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

describe("the run's refusals of a resume", () => {
  it('each cause has its code', () => {
    expect(controlRefusal('run is not paused (phase EXECUTING)').code).toBe('RUN_NOT_PAUSED');
    expect(controlRefusal('a tool approval must quote the arguments\' hash (argsSha256) of fs.write').code).toBe('APPROVAL_MISMATCH');
    expect(controlRefusal(`argsSha256 ${'a'.repeat(64)} is not the pending call's (fs.write, ${'b'.repeat(64)}): the arguments changed`).code).toBe('APPROVAL_MISMATCH');
    expect(controlRefusal('only a tool approval can be denied; this pause is MANUAL_PAUSE').code).toBe('NOT_AWAITING_APPROVAL');
    expect(controlRefusal("the run's pause (MANUAL_PAUSE) was not set by 'tenant-pause'").code).toBe('CONTROL_REFUSED');
  });
});


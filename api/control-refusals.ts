import { ApplicationFailure } from '@temporalio/common';
import { authoritiesInWords, authorityInWords, orList, withAuthoritiesInWords } from '../core/authority-words';
import { isResumeRefusalCode, type ResumeRefusal, type ResumeRefusalCode } from '../workflows/messages';
import { HttpError } from './errors';
import type { ProblemCode } from './problems';

/** The problem a tenant is answered for each reason a run refuses a resume, an approval or a denial. */
const PROBLEM_OF: Record<ResumeRefusalCode, ProblemCode> = {
  RUN_NOT_PAUSED: 'RUN_NOT_PAUSED',
  PAUSE_NOT_TAGGED: 'CONTROL_REFUSED',
  NO_AUTHORITY: 'RESUME_NOT_ALLOWED',
  AUTHORITY_NOT_ALLOWED: 'RESUME_NOT_ALLOWED',
  APPROVAL_MISMATCH: 'APPROVAL_MISMATCH',
  NOT_AWAITING_APPROVAL: 'NOT_AWAITING_APPROVAL',
  UNREADABLE_REQUEST: 'CONTROL_REFUSED',
};

/**
 * A run's refusal (the failure its update validator threw, `workflows/governor.ts`) as the problem
 * a tenant is answered: the code the run gave, and its sentence with the internal authority names
 * (FOUNDER_ONLY, ...) put in a tenant's words. A refusal without a known code (a worker of an
 * older release words it as a plain error) is CONTROL_REFUSED with its sentence.
 */
export function controlRefusal(failure: unknown): HttpError {
  const sentence = failure instanceof Error ? failure.message : String(failure);
  if (!(failure instanceof ApplicationFailure) || !isResumeRefusalCode(failure.type ?? undefined)) {
    return new HttpError('CONTROL_REFUSED', withAuthoritiesInWords(sentence));
  }
  const code = failure.type as ResumeRefusalCode;
  const details = (failure.details?.[0] ?? {}) as Omit<ResumeRefusal, 'code' | 'sentence'>;
  if (code === 'AUTHORITY_NOT_ALLOWED' && details.held?.length && details.allowed && details.pauseReason) {
    // The first authority a key holds is its role's (`authoritiesOf` in run-controls).
    const who = authorityInWords(details.held[0]!);
    const may = orList(authoritiesInWords(details.allowed));
    return new HttpError(PROBLEM_OF[code], `this key (${who}) may not resume a ${details.pauseReason} pause: only ${may} may`);
  }
  return new HttpError(PROBLEM_OF[code], withAuthoritiesInWords(sentence));
}

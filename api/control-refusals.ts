import { authoritiesInWords, authorityInWords, orList, withAuthoritiesInWords } from '../core/authority-words';
import { HttpError } from './errors';
import type { ProblemCode } from './problems';

/**
 * Why the run refused a resume, an approval or a denial (its update validator's reason, as
 * `workflows/governor.ts` words it), as the problem a tenant is answered: a code per cause, and
 * the run's sentence with its internal authority names (FOUNDER_ONLY, ...) put in a tenant's words.
 */
const REFUSALS: readonly [RegExp, ProblemCode][] = [
  [/^run is not paused\b/, 'RUN_NOT_PAUSED'],
  [/\bmay not resume a\b|^a resume must name its authority\b/, 'RESUME_NOT_ALLOWED'],
  [/^a tool approval must quote\b|^argsSha256 \S+ is not the pending call's\b/, 'APPROVAL_MISMATCH'],
  [/^only a tool approval can be denied\b/, 'NOT_AWAITING_APPROVAL'],
];

/** `authority TENANT_USER/API_KEY_OWNER may not resume a POLICY_CHANGE pause (allowed: TENANT_ADMIN, FOUNDER_ONLY)` */
const NOT_ALLOWED = /^authority (\S+) may not resume an? (\S+) pause \(allowed: ([^)]*)\)$/;

export function controlRefusal(reason: string): HttpError {
  const code = REFUSALS.find(([pattern]) => pattern.test(reason))?.[1] ?? 'CONTROL_REFUSED';
  const notAllowed = NOT_ALLOWED.exec(reason);
  if (notAllowed) {
    const [, held, pauseReason, allowed] = notAllowed;
    // The first authority a key holds is its role's (`authoritiesOf` in run-controls).
    const who = authorityInWords(held!.split('/')[0]!);
    const may = orList(authoritiesInWords(allowed!.split(',').map((a) => a.trim())));
    return new HttpError(code, `this key (${who}) may not resume a ${pauseReason} pause: only ${may} may`);
  }
  return new HttpError(code, withAuthoritiesInWords(reason));
}

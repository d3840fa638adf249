import { HttpError } from './errors';
import type { ProblemCode } from './problems';

/**
 * Why the run refused a resume, an approval or a denial (its update validator's reason, as
 * `workflows/governor.ts` words it), as the problem the caller is answered: a code per cause.
 */
const REFUSALS: readonly [RegExp, ProblemCode][] = [
  [/^run is not paused\b/, 'RUN_NOT_PAUSED'],
  [/\bmay not resume a\b|^a resume must name its authority\b/, 'RESUME_NOT_ALLOWED'],
  [/^a tool approval must quote\b|^argsSha256 \S+ is not the pending call's\b/, 'APPROVAL_MISMATCH'],
  [/^only a tool approval can be denied\b/, 'NOT_AWAITING_APPROVAL'],
];

export function controlRefusal(reason: string): HttpError {
  return new HttpError(REFUSALS.find(([pattern]) => pattern.test(reason))?.[1] ?? 'CONTROL_REFUSED', reason);
}

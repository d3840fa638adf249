/**
 * Compile-time checks, run by `tsc` in the test command: each activity proxy reaches only the
 * activities of its purpose, so a call through the wrong timeouts and retry policy does not compile.
 */
import { domain, skills } from '../../workflows/activity-proxies';

export const proxiesByPurpose = [
  domain.finalizeRun,
  skills.executeStep,
  // @ts-expect-error a skill call does not run under the domain writes' 30 s timeout and unlimited retries
  domain.executeStep,
  // @ts-expect-error a domain write does not run under a skill's three attempts
  skills.createIncident,
  // @ts-expect-error the audit loop's activities belong to its own workflows
  domain.reconcileDueRuns,
];

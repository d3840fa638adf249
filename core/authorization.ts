import type { PlanStep } from './plan';
import type { PolicyRules } from './policy';

export type ApiRole = 'admin' | 'member' | 'viewer';
export type TenantStatus = 'active' | 'suspended';

export interface AuthorizationInput {
  role: ApiRole;
  tenantStatus: TenantStatus;
  policy: PolicyRules;
  plan: readonly PlanStep[];
  budgetUsd: number;
}

export type AuthorizationDecision = { decision: 'ALLOWED'; reason: null } | { decision: 'DENIED'; reason: string };

/** The roles whose keys may submit runs: a viewer key reads runs, it does not start them. */
export const SUBMITTING_ROLES: readonly ApiRole[] = ['admin', 'member'];

/**
 * Why a key of `role` may not submit a run at all, or null. Such a submit is refused at the door
 * (403) and writes nothing: it is no governed run, and recording it as a denied one (a workflow, six
 * acks, an incident and an alert each) let a burst of viewer submits spend the tenant's alert budget.
 */
export function submitRefusal(role: ApiRole): string | null {
  return SUBMITTING_ROLES.includes(role) ? null : `role '${role}' may not start runs (needs ${SUBMITTING_ROLES.join(' or ')}); nothing was recorded`;
}

/**
 * The submit-time authorization pre-check (seed §2.1, L4 RBAC). A denied run is still recorded and
 * started, so that it ends FAILED with an incident like every other governed outcome. (A viewer
 * never gets here: `submitRefusal` turns it away first; the check stays as a second line.)
 */
export function authorizeRun(input: AuthorizationInput): AuthorizationDecision {
  const reasons: string[] = [];
  if (input.role === 'viewer') reasons.push("role 'viewer' may not start runs");
  if (input.tenantStatus !== 'active') reasons.push(`tenant is ${input.tenantStatus}`);
  if (!input.policy.enabled) reasons.push('tenant policy is disabled');
  const disallowed = [...new Set(input.plan.map((s) => s.skill).filter((s) => !input.policy.allowedSkills.includes(s)))];
  if (disallowed.length) reasons.push(`skills not allowed by policy: ${disallowed.join(', ')}`);
  if (input.plan.length > input.policy.maxSteps) {
    reasons.push(`plan has ${input.plan.length} steps, policy allows ${input.policy.maxSteps}`);
  }
  if (input.budgetUsd > input.policy.budgetPerRunUsd) {
    reasons.push(`budget $${input.budgetUsd} is above the policy's $${input.policy.budgetPerRunUsd} per run`);
  }
  return reasons.length ? { decision: 'DENIED', reason: reasons.join('; ') } : { decision: 'ALLOWED', reason: null };
}

import { createAgentActivities } from './agent';
import { createControlActivities } from './control';
import type { ActivityDeps } from './deps';
import { createIncidentActivities } from './incidents';
import { createLessonActivities } from './lessons';
import { createLogActivities } from './logs';
import { createPolicyActivities } from './policies';
import { createReconcilerActivities } from './reconciler';
import { createRetentionActivities } from './retention';
import { createRunActivities } from './runs';
import { createSkillActivities } from './skills';
import { createToolCallActivities } from './tool-calls';
import { createTraceActivities } from './traces';

export type { ActivityDeps, LlmConfig } from './deps';

/** Every activity the worker registers, bound to its dependencies (db, metrics, LLM settings). */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createRunActivities(deps),
    ...createTraceActivities(deps),
    ...createIncidentActivities(deps),
    ...createPolicyActivities(deps),
    ...createLessonActivities(deps),
    ...createLogActivities(deps),
    ...createSkillActivities(deps),
    ...createAgentActivities(deps),
    ...createToolCallActivities(deps),
    ...createControlActivities(deps),
    ...createReconcilerActivities(deps),
    ...createRetentionActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;

/** The run's work: plan steps, model turns and tool calls; slow, billed, retried a few times (the workflow's `skills` proxy). */
export type SkillActivities = ReturnType<typeof createSkillActivities> & ReturnType<typeof createAgentActivities>;
/** The audit loop's work, run by its own workflows. */
export type ReconcilerActivities = ReturnType<typeof createReconcilerActivities>;
/** Retention's batches, run by the pruning workflow on the audit loop's queue. */
export type RetentionActivities = ReturnType<typeof createRetentionActivities>;
/** The run's short idempotent writes to its domains (the workflow's `domain` proxy). */
export type DomainActivities = Omit<Activities, keyof SkillActivities | keyof ReconcilerActivities | keyof RetentionActivities>;

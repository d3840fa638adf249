import { createHash, randomUUID } from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, type Client } from '@temporalio/client';
import { and, eq, sql } from 'drizzle-orm';
import { authorizeRun } from '../core/authorization';
import { describeZodError, submitRunBody, toPlan } from '../core/plan';
import type { ObservabilityMode } from '../core/policy';
import { RUN_PHASE, RUN_STATUS, TENANT_ID } from '../core/search-attributes';
import type { Db } from '../db/client';
import { declareRunContract } from '../db/audit';
import { runs } from '../db/schema';
import { currentPolicy } from '../db/tenancy';
import type { RunWorkflowInput } from '../workflows/messages';
import { runWorkflow } from '../workflows/run';
import type { Caller } from './auth';
import { HttpError } from './errors';

export interface SubmitDeps {
  db: Db;
  temporal: Client;
  taskQueue: string;
  defaultObservabilityMode: ObservabilityMode;
  /** The liveness deadline of `finalize_run`: run timeout plus grace. */
  runDeadlineSeconds: number;
}

export interface SubmitResult {
  runId: string;
  authorizationDecision: 'ALLOWED' | 'DENIED';
  /** True when an earlier request with the same Idempotency-Key created the run. */
  replayed: boolean;
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/;

/**
 * Validates, authorizes and records the run with its audit expectations in one transaction (T0),
 * then starts its workflow. Nothing is written for a request that fails validation.
 */
export async function submitRun(
  deps: SubmitDeps,
  caller: Caller,
  body: unknown,
  idempotencyKey: string | undefined,
): Promise<SubmitResult> {
  if (idempotencyKey !== undefined && !IDEMPOTENCY_KEY.test(idempotencyKey)) {
    throw new HttpError(400, 'Idempotency-Key must be 1-200 visible ASCII characters');
  }
  if (body === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new HttpError(400, 'request body must be a JSON object with a "plan"');
  }
  const parsed = submitRunBody.safeParse(body);
  if (!parsed.success) throw new HttpError(400, `invalid run: ${describeZodError(parsed.error)}`);

  const plan = toPlan(parsed.data);
  const policy = await currentPolicy(deps.db, caller.tenantId);
  const budgetUsd = parsed.data.budgetUsd ?? policy.rules.budgetPerRunUsd;
  const authorization = authorizeRun({ role: caller.role, tenantStatus: caller.tenantStatus, policy: policy.rules, plan, budgetUsd });
  const observabilityMode = policy.rules.observabilityMode ?? deps.defaultObservabilityMode;
  const requestHash = createHash('sha256').update(JSON.stringify(parsed.data)).digest('hex');

  const created = await deps.db.transaction(async (tx) => {
    const [row] = await tx
      .insert(runs)
      .values({
        id: randomUUID(),
        tenantId: caller.tenantId,
        apiKeyId: caller.apiKeyId,
        idempotencyKey: idempotencyKey ?? null,
        requestHash,
        plan,
        budgetUsd,
        status: 'queued',
        phase: 'CREATED',
        authorizationDecision: authorization.decision,
        authorizationReason: authorization.reason,
        policyVersion: policy.version,
        observabilityMode,
      })
      .onConflictDoNothing({ target: [runs.tenantId, runs.idempotencyKey], where: sql`${runs.idempotencyKey} is not null` })
      .returning({ id: runs.id });
    if (!row) return null;
    await declareRunContract(tx, { runId: row.id, tenantId: caller.tenantId, deadlineSeconds: deps.runDeadlineSeconds });
    return row.id;
  });

  if (created === null) return replay(deps, caller, idempotencyKey!, requestHash);

  const input: RunWorkflowInput = {
    runId: created,
    tenantId: caller.tenantId,
    plan,
    budgetUsd,
    authorization,
    observabilityMode,
    policyVersion: policy.version,
  };
  await startRunWorkflow(deps, input);
  return { runId: created, authorizationDecision: authorization.decision, replayed: false };
}

async function replay(deps: SubmitDeps, caller: Caller, idempotencyKey: string, requestHash: string): Promise<SubmitResult> {
  const [existing] = await deps.db
    .select()
    .from(runs)
    .where(and(eq(runs.tenantId, caller.tenantId), eq(runs.idempotencyKey, idempotencyKey)));
  if (!existing) throw new Error('idempotency conflict without an existing run');
  if (existing.requestHash !== requestHash) {
    throw new HttpError(422, 'Idempotency-Key was already used with a different request body', { runId: existing.id });
  }
  // The first request may have died between its commit and the workflow start: start it now.
  if (existing.phase === 'CREATED') {
    await startRunWorkflow(deps, {
      runId: existing.id,
      tenantId: existing.tenantId,
      plan: existing.plan,
      budgetUsd: existing.budgetUsd,
      authorization:
        existing.authorizationDecision === 'ALLOWED'
          ? { decision: 'ALLOWED', reason: null }
          : { decision: 'DENIED', reason: existing.authorizationReason ?? 'denied' },
      observabilityMode: existing.observabilityMode as ObservabilityMode,
      policyVersion: existing.policyVersion,
    });
  }
  return { runId: existing.id, authorizationDecision: existing.authorizationDecision, replayed: true };
}

async function startRunWorkflow(deps: SubmitDeps, input: RunWorkflowInput): Promise<void> {
  try {
    await deps.temporal.workflow.start(runWorkflow, {
      taskQueue: deps.taskQueue,
      workflowId: input.runId,
      args: [input],
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      typedSearchAttributes: [
        { key: RUN_PHASE, value: 'CREATED' },
        { key: RUN_STATUS, value: 'queued' },
        { key: TENANT_ID, value: input.tenantId },
      ],
      staticSummary: `governed run for tenant ${input.tenantId} (${input.plan.length} steps)`,
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return;
    // A start that timed out may still have happened: only a workflow known not to exist is a
    // failed start. Otherwise the run stays CREATED, a retry with the same Idempotency-Key starts
    // it, and its finalize_run deadline reports it if nobody does.
    if (await workflowMissing(deps.temporal, input.runId)) {
      await deps.db
        .update(runs)
        .set({
          phase: 'FAILED',
          status: 'failed',
          errorCode: 'WORKFLOW_START_FAILED',
          errorMessage: err instanceof Error ? err.message : String(err),
          finishedAt: sql`now()`,
          updatedAt: sql`now()`,
        })
        .where(and(eq(runs.id, input.runId), eq(runs.phase, 'CREATED')));
    }
    throw new HttpError(503, 'the run was recorded but could not be started; retry later', { runId: input.runId });
  }
}

async function workflowMissing(temporal: Client, runId: string): Promise<boolean> {
  try {
    await temporal.workflow.getHandle(runId).describe();
    return false;
  } catch (err) {
    return err instanceof WorkflowNotFoundError;
  }
}

import { createHash, randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { authorizeRun } from '../core/authorization';
import { toPlan, type SubmitRunBody } from '../core/plan';
import type { ObservabilityMode } from '../core/policy';
import type { Db } from '../db/client';
import { declareRunContract } from '../db/audit';
import { insertRun, runByIdempotencyKey } from '../db/runs';
import { currentPolicy } from '../db/tenancy';
import { tryStartRunWorkflow, workflowInputOf } from '../dispatch/run-starter';
import type { Logger } from '../lib/logger';
import type { RunWorkflowInput } from '../workflows/messages';
import type { Caller } from './auth';
import { HttpError } from './errors';

export interface SubmitDeps {
  db: Db;
  temporal: Client;
  taskQueue: string;
  defaultObservabilityMode: ObservabilityMode;
  /** The liveness deadline of `finalize_run`: run timeout plus grace. */
  runDeadlineSeconds: number;
  /** How long the start may wait for Temporal before it is queued. */
  temporalCallTimeoutMs: number;
  logger: Logger;
}

export interface SubmitResult {
  runId: string;
  authorizationDecision: 'ALLOWED' | 'DENIED';
  /** True when an earlier request with the same Idempotency-Key created the run. */
  replayed: boolean;
  /** `queued`: Temporal did not answer in time; the run starts as soon as it does. */
  workflow: 'started' | 'queued';
}

/**
 * Authorizes and records the run with its audit expectations in one transaction (T0), then starts
 * its workflow, or leaves that to the starter when Temporal does not answer in time. The request
 * was validated against the contract before (`api/router.ts`); nothing accepted is lost.
 */
export async function submitRun(deps: SubmitDeps, caller: Caller, body: SubmitRunBody, idempotencyKey: string | undefined): Promise<SubmitResult> {
  const plan = toPlan(body);
  const policy = await currentPolicy(deps.db, caller.tenantId);
  const budgetUsd = body.budgetUsd ?? policy.rules.budgetPerRunUsd;
  const authorization = authorizeRun({ role: caller.role, tenantStatus: caller.tenantStatus, policy: policy.rules, plan, budgetUsd });
  const observabilityMode = policy.rules.observabilityMode ?? deps.defaultObservabilityMode;
  const requestHash = createHash('sha256').update(JSON.stringify(body)).digest('hex');

  const created = await deps.db.transaction(async (tx) => {
    const row = await insertRun(tx, {
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
      taskQueue: deps.taskQueue,
    });
    if (!row) return null;
    await declareRunContract(tx, { runId: row.id, tenantId: caller.tenantId, deadlineSeconds: deps.runDeadlineSeconds });
    return row;
  });

  if (created === null) return replay(deps, caller, idempotencyKey!, requestHash);

  // The same input as any later start of this run (the starter's, a retried submit's): built from the stored row.
  const started = await startNow(deps, workflowInputOf(created));
  return { runId: created.id, authorizationDecision: authorization.decision, replayed: false, workflow: started ? 'started' : 'queued' };
}

async function replay(deps: SubmitDeps, caller: Caller, idempotencyKey: string, requestHash: string): Promise<SubmitResult> {
  const existing = await runByIdempotencyKey(deps.db, caller.tenantId, idempotencyKey);
  if (!existing) throw new Error('idempotency conflict without an existing run');
  if (existing.requestHash !== requestHash) {
    throw new HttpError('IDEMPOTENCY_KEY_REUSED', 'Idempotency-Key was already used with a different request body', { runId: existing.id });
  }
  // The first request may not have reached Temporal: the retry tries again rather than wait for the starter.
  const started = existing.workflowStartedAt !== null || (await startNow(deps, workflowInputOf(existing)));
  return { runId: existing.id, authorizationDecision: existing.authorizationDecision, replayed: true, workflow: started ? 'started' : 'queued' };
}

/**
 * The run is already durable: a start that Temporal does not answer in time is left to the
 * dispatcher's starter (in the worker), which starts every unstarted run when Temporal is back.
 */
function startNow(deps: SubmitDeps, input: RunWorkflowInput): Promise<boolean> {
  return tryStartRunWorkflow({ ...deps, startTimeoutMs: deps.temporalCallTimeoutMs }, input, (err) =>
    deps.logger.warn({ runId: input.runId, err: err instanceof Error ? err.message : String(err) }, 'run recorded; its start is queued'),
  );
}

import { defineQuery } from '@temporalio/workflow';
import type { ObservabilityMode } from '../core/policy';
import type { RunPhase, RunStatus } from '../core/phases';
import type { PlanStep } from '../core/plan';
import type { SagaPhase } from '../core/saga';

export interface RunWorkflowInput {
  runId: string;
  tenantId: string;
  plan: PlanStep[];
  budgetUsd: number;
  authorization: { decision: 'ALLOWED' | 'DENIED'; reason: string | null };
  observabilityMode: ObservabilityMode;
}

/** What the run query returns: the live state an operator or the API sees. */
export interface RunState {
  runId: string;
  tenantId: string;
  phase: RunPhase;
  status: RunStatus;
  totalSteps: number;
  stepsCompleted: number;
  costUsd: number;
  tokens: number;
  budgetUsd: number;
  observabilityStatus: 'OK' | 'DEGRADED';
  sagaPhase: SagaPhase;
  error: { code: string; message: string } | null;
}

export const runStateQuery = defineQuery<RunState>('runState');

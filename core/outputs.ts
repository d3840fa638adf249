/**
 * A step's whole output lives in Postgres, keyed by run and step (and, inside an agent step, by
 * turn and tool call); the workflow history carries only this reference, so a long or large run
 * stays far below Temporal's payload and history limits.
 */
export interface OutputRef {
  id: string;
  sha256: string;
  bytes: number;
  contentType: OutputContentType;
}

export type OutputContentType = 'text/plain' | 'application/json';

/** The default per-output limit (`MAX_STEP_OUTPUT_BYTES`): larger results fail, never truncate. */
export const DEFAULT_MAX_STEP_OUTPUT_BYTES = 1024 * 1024;

/** Where a stored output belongs: a plan step (its final output), or an agent's turn or tool call. */
export type OutputKind = 'step' | 'turn' | 'tool_call';

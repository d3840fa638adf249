/**
 * How one tool call the model asked for was resolved: each ends its expectation in the run's audit
 * contract, stores what the model is told, and is shown to people. Pure.
 */
export const TOOL_CALL_RESOLUTIONS = [
  /** The tool ran and answered. */
  'ok',
  /** The tool ran and reported an error of its own. */
  'tool_error',
  /** The arguments did not match the tool's schema: nothing ran. */
  'invalid_arguments',
  /** The server answered with a protocol error (unknown tool, bad parameters): nothing ran. */
  'refused_by_server',
  /** The tool ran, but its result is over the output limit and was not kept. */
  'output_too_large',
  /** An attempt was lost after it may have reached the tool; a tool with side effects is not run again. */
  'outcome_unknown',
  /** The tool kept failing to answer (its server down): retried as far as it is safe, then given up. */
  'failed',
  /** No configured server offers what the model named. */
  'unknown_tool',
  /** The tenant's policy does not allow the tool for this run. */
  'not_allowed',
  /** A person denied it (or its approval ran out under a CONTINUE SLA). */
  'denied',
  /** The run's `maxCallsPerRun` was reached. */
  'limit',
  /** The run ended (stopped, failed, out of budget) before the call could run. */
  'not_run',
] as const;
export type ToolCallResolution = (typeof TOOL_CALL_RESOLUTIONS)[number];

/** The resolutions in which the tool may have run, so its price is charged. */
export function toolMayHaveRun(resolution: ToolCallResolution): boolean {
  return resolution === 'ok' || resolution === 'tool_error' || resolution === 'output_too_large' || resolution === 'outcome_unknown';
}

/** The short line a person sees for a resolution the run decided (not the tool). */
export function governanceMessage(resolution: Extract<ToolCallResolution, 'unknown_tool' | 'not_allowed' | 'denied' | 'limit' | 'not_run'>, tool: string, why: string): string {
  const what = {
    unknown_tool: 'was not run: no tool server offers it',
    not_allowed: "was not run: the tenant's policy does not allow it",
    denied: 'was not run: its approval was denied',
    limit: "was not run: the run reached its policy's limit of tool calls",
    not_run: 'was not run: the run ended first',
  }[resolution];
  return `The call to ${tool} ${what}${why ? ` (${why})` : ''}.`;
}

/** A tool call waiting for a person's approval (a TOOL_APPROVAL pause), as the run shows it and its pause record keeps it. */
export interface PendingApproval {
  stepIndex: number;
  turn: number;
  callIndex: number;
  tool: string;
  argsSha256: string;
  argsPreview: string;
}

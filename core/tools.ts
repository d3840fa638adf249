/**
 * Tools as policies, records and people name them: `server.tool`, where `server` is the name the
 * operator gave a tool server in the worker's configuration and `tool` the name that server lists.
 * Pure: the workflow matches a tool call against the policy it holds without a round trip.
 */

/** `server.tool`. */
export type ToolId = string;

/** What a denied tool call does: the model is told and may go on, or the run fails. */
export const TOOL_DENIAL_BEHAVIORS = ['RETURN_TO_MODEL', 'FAIL_RUN'] as const;
export type ToolDenialBehavior = (typeof TOOL_DENIAL_BEHAVIORS)[number];

/**
 * Which tools an agent may call, per tenant (validated by `toolPolicy` in core/policy.ts, which
 * must infer exactly this type). Declared here, without zod, for the workflow's sake (see below).
 */
export interface ToolPolicy {
  allow: string[];
  /** Calls that pause for a person (TOOL_APPROVAL), who approves the exact arguments. */
  requireApproval: string[];
  maxCallsPerRun: number;
  /** USD per call, by pattern (the first match counts); a tool not listed costs nothing. */
  prices: { pattern: string; usd: number }[];
  /** A call refused by this policy (not allowed, over the limit, denied by a person). */
  onDenied: ToolDenialBehavior;
}

/**
 * The tool policy of a tenant whose policy names none: no tool allowed. Here rather than in
 * core/policy.ts, beside the schema it satisfies, so that the workflow, which reads it, does not
 * import zod and the policy schemas: every workflow in the worker's cache instantiates each module
 * its code imports, and those cost about 1 MB per cached run (README, Benchmarks).
 */
export const DEFAULT_TOOL_POLICY: ToolPolicy = { allow: [], requireApproval: [], maxCallsPerRun: 100, prices: [], onDenied: 'RETURN_TO_MODEL' };

/** A tool server's name in the operator's configuration. */
export const TOOL_SERVER_NAME = /^[a-z][a-z0-9_-]{0,31}$/;

/** A policy's tool pattern: `server.tool`, every tool of a server (`server.*`), or every tool (`*`). */
export const TOOL_PATTERN = /^(\*|[a-z][a-z0-9_-]{0,31}\.(\*|[^\s*]{1,128}))$/;

export function toolIdOf(server: string, tool: string): ToolId {
  return `${server}.${tool}`;
}

/** The server and tool of an id; null when it names no server. */
export function splitToolId(id: ToolId): { server: string; tool: string } | null {
  const dot = id.indexOf('.');
  if (dot <= 0 || dot === id.length - 1) return null;
  return { server: id.slice(0, dot), tool: id.slice(dot + 1) };
}

export function matchesToolPattern(pattern: string, id: ToolId): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('.*')) return splitToolId(id)?.server === pattern.slice(0, -2);
  return pattern === id;
}

export function matchesAnyToolPattern(patterns: readonly string[], id: ToolId): boolean {
  return patterns.some((pattern) => matchesToolPattern(pattern, id));
}

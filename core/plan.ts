import { z } from 'zod';
import { STEP_NAME, checkPlanReferences } from './references';
import { TOOL_PATTERN } from './tools';

/** The simulator: tokens and cost follow from the input alone, so a run is reproducible. */
export const simLlmInput = z
  .object({
    prompt: z.string().min(1).max(100_000),
    /** Completion tokens to report; by default derived from the prompt. */
    completionTokens: z.number().int().min(0).max(1_000_000).optional(),
    latencyMs: z.number().int().min(0).max(600_000).optional(),
    /** Fail the first N attempts of this step, then succeed (exercises activity retries). */
    failAttempts: z.number().int().min(0).max(100).optional(),
    /** Fail every attempt. */
    fail: z.boolean().optional(),
    /** Produce an output of exactly this many bytes (whole outputs, their limit and the bench). */
    outputBytes: z.number().int().min(0).max(16 * 1024 * 1024).optional(),
  })
  .strict();

const chatMessage = z.object({
  role: z.enum(['system', 'user', 'assistant']),
  content: z.string().max(200_000),
});

export const llmChatInput = z
  .object({
    messages: z.array(chatMessage).min(1).max(200),
    model: z.string().min(1).max(200).optional(),
    maxTokens: z.number().int().positive().max(200_000).optional(),
    temperature: z.number().min(0).max(2).optional(),
  })
  .strict();

/** The most model turns one agent step may take; its policy and budget usually end it far sooner. */
export const MAX_AGENT_TURNS = 1_000;

/**
 * A model that calls tools in a loop until it answers without one: each model turn and each tool
 * call is a governed step of the run. The tools it may use are the ones the tenant's policy allows,
 * narrowed by `tools` when given.
 */
export const agentInput = z
  .object({
    instructions: z.string().min(1).max(100_000).optional(),
    messages: z.array(chatMessage).max(200).optional(),
    model: z.string().min(1).max(200).optional(),
    tools: z.array(z.string().regex(TOOL_PATTERN, "a tool pattern: 'server.tool', 'server.*' or '*'")).max(100).optional(),
    maxTurns: z.number().int().min(1).max(MAX_AGENT_TURNS).default(10),
    /** Each turn's completion bound (the provider's `max_tokens`), which makes every turn's cost bounded. */
    maxTokens: z.number().int().positive().max(200_000).default(1024),
    /** Tool calls of one turn run side by side, this many at once. */
    maxParallelToolCalls: z.number().int().min(1).max(16).default(4),
    temperature: z.number().min(0).max(2).optional(),
  })
  .strict()
  .refine((a) => a.instructions !== undefined || (a.messages?.length ?? 0) > 0, { message: 'an agent needs instructions or messages' });

export const SKILL_INPUTS = {
  'sim.llm': simLlmInput,
  'llm.chat': llmChatInput,
  agent: agentInput,
} as const;

export type SkillName = keyof typeof SKILL_INPUTS;
export const SKILL_NAMES = Object.keys(SKILL_INPUTS) as SkillName[];

export type SimLlmInput = z.infer<typeof simLlmInput>;
export type LlmChatInput = z.infer<typeof llmChatInput>;
export type AgentInput = z.infer<typeof agentInput>;

/** A step's name, so that later steps can use its output (`{{steps.<name>.output}}`). */
interface Named {
  name?: string;
}

export type PlanStep = Named &
  ({ skill: 'sim.llm'; input: SimLlmInput } | { skill: 'llm.chat'; input: LlmChatInput } | { skill: 'agent'; input: AgentInput });

const planStep = z
  .object({
    skill: z.string().min(1).max(100),
    name: z.string().regex(STEP_NAME, 'a name starts with a letter and has at most 63 letters, digits, _ or -').optional(),
    input: z.record(z.string(), z.unknown()).default({}),
  })
  .strict()
  .transform((step, ctx) => {
    const schema = Object.hasOwn(SKILL_INPUTS, step.skill) ? SKILL_INPUTS[step.skill as SkillName] : undefined;
    if (!schema) {
      ctx.addIssue({ code: 'custom', path: ['skill'], message: `unknown skill '${step.skill}' (known: ${SKILL_NAMES.join(', ')})` });
      return z.NEVER;
    }
    const parsed = schema.safeParse(step.input);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) {
        ctx.addIssue({ code: 'custom', path: ['input', ...issue.path.map(String)], message: issue.message });
      }
      return z.NEVER;
    }
    // What is stored and run is the input as its skill reads it, defaults filled in.
    return { ...step, input: parsed.data as Record<string, unknown> };
  });

/** As many as a policy may allow (`maxSteps`); the body limit bounds the plan's size, continue-as-new its history. */
export const MAX_PLAN_STEPS = 10_000;

export const submitRunBody = z
  .object({
    plan: z
      .array(planStep)
      .min(1, 'plan must have at least one step')
      .max(MAX_PLAN_STEPS)
      .superRefine((plan, ctx) => {
        for (const issue of checkPlanReferences(plan)) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
      }),
    budgetUsd: z.number().positive('budgetUsd must be greater than 0').max(1_000_000).optional(),
  })
  .strict();

export type SubmitRunBody = z.infer<typeof submitRunBody>;

/** The step inputs were checked against their skill's schema by `submitRunBody`. */
export function toPlan(body: SubmitRunBody): PlanStep[] {
  return body.plan.map((step) => ({ skill: step.skill, ...(step.name !== undefined ? { name: step.name } : {}), input: step.input }) as PlanStep);
}

/** A readable one-line reason from a zod error, for HTTP 400 bodies. */
export function describeZodError(error: z.ZodError): string {
  return error.issues
    .map((issue) => (issue.path.length ? `${issue.path.join('.')}: ${issue.message}` : issue.message))
    .join('; ');
}

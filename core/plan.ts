import { z } from 'zod';

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
  })
  .strict();

export const llmChatInput = z
  .object({
    messages: z
      .array(
        z.object({
          role: z.enum(['system', 'user', 'assistant']),
          content: z.string().max(200_000),
        }),
      )
      .min(1)
      .max(200),
    model: z.string().min(1).max(200).optional(),
    maxTokens: z.number().int().positive().max(200_000).optional(),
    temperature: z.number().min(0).max(2).optional(),
  })
  .strict();

export const SKILL_INPUTS = {
  'sim.llm': simLlmInput,
  'llm.chat': llmChatInput,
} as const;

export type SkillName = keyof typeof SKILL_INPUTS;
export const SKILL_NAMES = Object.keys(SKILL_INPUTS) as SkillName[];

export type SimLlmInput = z.infer<typeof simLlmInput>;
export type LlmChatInput = z.infer<typeof llmChatInput>;

export type PlanStep =
  | { skill: 'sim.llm'; input: SimLlmInput }
  | { skill: 'llm.chat'; input: LlmChatInput };

const planStep = z
  .object({
    skill: z.string().min(1).max(100),
    input: z.record(z.string(), z.unknown()).default({}),
  })
  .strict()
  .superRefine((step, ctx) => {
    const schema = SKILL_INPUTS[step.skill as SkillName];
    if (!schema) {
      ctx.addIssue({
        code: 'custom',
        path: ['skill'],
        message: `unknown skill '${step.skill}' (known: ${SKILL_NAMES.join(', ')})`,
      });
      return;
    }
    const parsed = schema.safeParse(step.input);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) {
        ctx.addIssue({ code: 'custom', path: ['input', ...issue.path.map(String)], message: issue.message });
      }
    }
  });

/** As many as a policy may allow (`maxSteps`); the body limit bounds the plan's size, continue-as-new its history. */
export const MAX_PLAN_STEPS = 10_000;

export const submitRunBody = z
  .object({
    plan: z.array(planStep).min(1, 'plan must have at least one step').max(MAX_PLAN_STEPS),
    budgetUsd: z.number().positive('budgetUsd must be greater than 0').max(1_000_000).optional(),
  })
  .strict();

export type SubmitRunBody = z.infer<typeof submitRunBody>;

/** The step inputs were checked against their skill's schema by `submitRunBody`. */
export function toPlan(body: SubmitRunBody): PlanStep[] {
  return body.plan.map((step) => ({ skill: step.skill, input: step.input }) as PlanStep);
}

/** A readable one-line reason from a zod error, for HTTP 400 bodies. */
export function describeZodError(error: z.ZodError): string {
  return error.issues
    .map((issue) => (issue.path.length ? `${issue.path.join('.')}: ${issue.message}` : issue.message))
    .join('; ');
}

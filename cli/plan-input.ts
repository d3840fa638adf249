import { UsageError } from './exit-codes';
import { parseJson, readJsonFile } from './json-input';

export interface PlanStep {
  skill: string;
  input: Record<string, unknown>;
}

export interface SubmitBody {
  plan: PlanStep[];
  budgetUsd?: number;
}

/**
 * How `--step skill:text` reads plain text, per skill. Anything else (or any skill given a JSON
 * object, `--step 'sim.llm:{"prompt":"x","fail":true}'`) passes its input as written.
 */
const TEXT_INPUT: Record<string, (text: string) => Record<string, unknown>> = {
  'sim.llm': (text) => ({ prompt: text }),
  'llm.chat': (text) => ({ messages: [{ role: 'user', content: text }] }),
};

/** One `--step` flag: `sim.llm:plan a trip` (the shell has taken the quotes) or `skill:{json}`. */
export function stepFromFlag(flag: string): PlanStep {
  const colon = flag.indexOf(':');
  if (colon <= 0) throw new UsageError(`--step ${JSON.stringify(flag)}: write it as <skill>:<text> or <skill>:<json object>, e.g. sim.llm:"plan a trip"`);
  const skill = flag.slice(0, colon);
  const rest = flag.slice(colon + 1);
  if (rest.trimStart().startsWith('{')) return { skill, input: jsonObject(rest, `--step ${skill}`) };
  const fromText = TEXT_INPUT[skill];
  if (!fromText) {
    throw new UsageError(`--step ${skill}: plain text is read only for ${Object.keys(TEXT_INPUT).join(', ')}; give this skill's input as JSON: ${skill}:{...}`);
  }
  return { skill, input: fromText(rest) };
}

/**
 * A plan file: `{"plan": [...], "budgetUsd": n}` (the API's body) or a bare array of steps. JSON
 * only: YAML would need a parser the project does not depend on.
 */
export function bodyFromFile(path: string): SubmitBody {
  if (/\.ya?ml$/i.test(path)) throw new UsageError(`${path}: YAML plans are not supported, write the plan as JSON`);
  const parsed = readJsonFile(path);
  if (Array.isArray(parsed)) return { plan: parsed as PlanStep[] };
  if (parsed !== null && typeof parsed === 'object' && Array.isArray((parsed as SubmitBody).plan)) return parsed as SubmitBody;
  throw new UsageError(`${path}: expected {"plan": [...], "budgetUsd": n} or an array of steps`);
}

/** The body `runs submit` sends; the API validates the steps themselves. */
export function submitBodyOf(options: { file?: string; step: string[]; budget?: number }): SubmitBody {
  if (options.file && options.step.length > 0) throw new UsageError('give the plan with --file or with --step, not both');
  if (!options.file && options.step.length === 0) throw new UsageError('no plan: give --file plan.json or one --step per step');
  const body = options.file ? bodyFromFile(options.file) : { plan: options.step.map(stepFromFlag) };
  return options.budget === undefined ? body : { ...body, budgetUsd: options.budget };
}

function jsonObject(text: string, what: string): Record<string, unknown> {
  const parsed = parseJson(text, what);
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new UsageError(`${what}: the input must be a JSON object`);
  return parsed as Record<string, unknown>;
}

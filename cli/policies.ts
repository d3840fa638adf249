import type { Command } from 'commander';
import { collect, contextOf } from './context';
import { UsageError } from './exit-codes';
import { fields } from './format';
import { readJsonFile } from './json-input';

type Rules = Record<string, unknown>;

interface PolicyAnswer {
  version: number;
  rules: Rules;
  /** On a PUT: false when the policy sent was the current one (no new version, nothing pushed). */
  changed?: boolean;
  /** On a PUT: whether the change reached the live runs at once or waits for Temporal. */
  push?: string;
  signalledRuns?: number;
  note?: string;
}

export function registerPolicyCommands(program: Command): void {
  const policies = program.command('policies').description("your tenant's policy (admin keys)");

  policies
    .command('get')
    .description('the current policy and its version')
    .action(async (_options: unknown, command: Command) => {
      const ctx = contextOf(command);
      const policy = await ctx.api.get<PolicyAnswer>('/policies');
      ctx.print(policy, () => policyText(policy));
    });

  policies
    .command('set')
    .description('save a new policy version; it is pushed to your live runs')
    .option('--file <path>', 'the whole policy as JSON (the output of `policies get --json` too)')
    .option('--set <rule=value>', 'change one rule of the current policy, repeatable; value as JSON (10, true, null, ["sim.llm"]), text, or for lists a,b', collect, [])
    .action(async (options: { file?: string; set: string[] }, command: Command) => {
      const ctx = contextOf(command);
      if (options.file && options.set.length > 0) throw new UsageError('give --file or --set, not both');
      if (!options.file && options.set.length === 0) throw new UsageError('nothing to set: give --file policy.json or --set rule=value');
      const rules = options.file ? rulesFromFile(options.file) : withChanges((await ctx.api.get<PolicyAnswer>('/policies')).rules, options.set);
      const saved = await ctx.api.put<PolicyAnswer>('/policies', rules);
      ctx.print(saved, () => (saved.changed === false ? `policy version ${saved.version} unchanged: nothing saved, nothing pushed` : `policy version ${saved.version} saved; ${pushText(saved)}`));
    });
}

function policyText(policy: PolicyAnswer): string {
  return `policy version ${policy.version}\n${fields(Object.entries(policy.rules).map(([rule, value]) => [`  ${rule}`, JSON.stringify(value)]))}`;
}

function pushText(saved: PolicyAnswer): string {
  if (saved.push === 'pushed') return `live runs told: ${saved.signalledRuns ?? 0}`;
  if (saved.push === 'queued') return `live runs will be told as soon as Temporal answers${saved.note ? ` (${saved.note})` : ''}`;
  return 'live runs pick it up at their next check';
}

/** A policy document, or `policies get --json`'s `{version, rules}` so its output can be edited and sent back. */
function rulesFromFile(path: string): Rules {
  const parsed = readJsonFile(path);
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new UsageError(`${path}: a policy is a JSON object`);
  const doc = parsed as Rules;
  return 'rules' in doc && 'version' in doc && typeof doc.rules === 'object' ? (doc.rules as Rules) : doc;
}

/** The current rules with each `rule=value` applied; the API validates the result as a whole. */
export function withChanges(current: Rules, changes: string[]): Rules {
  const next = { ...current };
  for (const change of changes) {
    const eq = change.indexOf('=');
    if (eq <= 0) throw new UsageError(`--set ${JSON.stringify(change)}: write it as rule=value`);
    const rule = change.slice(0, eq);
    if (!(rule in current)) throw new UsageError(`--set: no rule '${rule}' (rules: ${Object.keys(current).join(', ')})`);
    next[rule] = ruleValue(change.slice(eq + 1), current[rule]);
  }
  return next;
}

/** JSON when it parses (10, false, null, ["a"]); otherwise text, or a comma list where the rule is a list. */
function ruleValue(raw: string, current: unknown): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return Array.isArray(current) ? raw.split(',').map((s) => s.trim()).filter(Boolean) : raw;
  }
}

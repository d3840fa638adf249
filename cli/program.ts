import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command, Option } from 'commander';
import { DEFAULT_API_URL } from './api-client';
import { registerApprovalCommands } from './approvals';
import { registerCompletionCommand } from './completion';
import { registerConfigCommands } from './config';
import { registerCostCommands } from './costs';
import { registerEvidenceCommands } from './evidence';
import { EXIT_CODES_HELP } from './exit-codes';
import { registerIncidentCommands } from './incidents';
import { registerLessonCommands } from './lessons';
import { registerPolicyCommands } from './policies';
import { registerReportCommands } from './reports';
import { registerRetentionCommands } from './retention';
import { registerRunCommands } from './runs';
import { registerTenantCommands } from './tenants';

/** The whole command tree; cli/main.ts runs it, and completion and the tests read it. */
export function buildProgram(): Command {
  const program = new Command('governed')
    .description('Governed runs over the HTTP API: submit and follow runs, operate incidents and policies.')
    .version(packageVersion(), '-V, --version', 'print the version')
    // Flag > environment > profile file > default (cli/profile.ts), resolved when a command calls the API.
    .addOption(new Option('--api-url <url>', `the API (else GOVERNED_API_URL, the profile's api-url, ${DEFAULT_API_URL})`))
    .addOption(new Option('--api-key <key>', "an API key of your tenant (else GOVERNED_API_KEY, the profile's api-key)"))
    .addOption(new Option('--profile <name>', 'the profile of the config file to use (else GOVERNED_PROFILE, default)'))
    .option('--json', "print the API's JSON answer instead of text")
    .showHelpAfterError()
    // Every command inherits this: commander's own errors come back as exceptions, so they get exit 2.
    .exitOverride()
    .addHelpText(
      'after',
      `
Examples:
  governed runs submit --step sim.llm:"plan a trip" --step sim.llm:"summarize" --budget 1.5 --watch
  governed runs output <run> --step 2
  governed approvals list
  governed runs list --phase EXECUTING
  governed runs evidence <run> > run.jsonl && governed evidence verify run.jsonl
  governed incidents list --status open --severity HIGH,CRITICAL
  governed config set api-key                 # stored 0600 in the profile file, read from a hidden prompt
  source <(governed completion bash)

${EXIT_CODES_HELP}`,
    );

  registerRunCommands(program);
  registerApprovalCommands(program);
  registerIncidentCommands(program);
  registerCostCommands(program);
  registerEvidenceCommands(program);
  registerLessonCommands(program);
  registerReportCommands(program);
  registerPolicyCommands(program);
  registerTenantCommands(program);
  registerRetentionCommands(program);
  registerConfigCommands(program);
  registerCompletionCommand(program);
  return program;
}

/** package.json's version, found up from this file: cli/ under tsx, dist/governed/cli/ compiled. */
function packageVersion(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'governed-runs' && pkg.version) return pkg.version;
    } catch {
      // not here; one level up
    }
    if (path.dirname(dir) === dir) return 'unknown';
  }
}


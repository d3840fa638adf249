import { Command, CommanderError, Option } from 'commander';
import { ApiError, DEFAULT_API_URL } from './api-client';
import { registerApprovalCommands } from './approvals';
import { CliError, EXIT, EXIT_CODES_HELP } from './exit-codes';
import { printJson } from './format';
import { registerIncidentCommands } from './incidents';
import { registerPolicyCommands } from './policies';
import { registerReportCommands } from './reports';
import { registerRunCommands } from './runs';
import { registerTenantCommands } from './tenants';

const program = new Command('governed')
  .description('Governed runs over the HTTP API: submit and follow runs, operate incidents and policies.')
  .addOption(new Option('--api-url <url>', 'the API').env('GOVERNED_API_URL').default(DEFAULT_API_URL))
  .addOption(new Option('--api-key <key>', 'an API key of your tenant').env('GOVERNED_API_KEY'))
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
  governed incidents list --status open --severity HIGH,CRITICAL

${EXIT_CODES_HELP}`,
  );

registerRunCommands(program);
registerApprovalCommands(program);
registerIncidentCommands(program);
registerReportCommands(program);
registerPolicyCommands(program);
registerTenantCommands(program);

function exitCodeOf(err: unknown): number {
  // Help and --version also end as CommanderErrors, with exit code 0.
  if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
  if (err instanceof CliError) return err.exitCode;
  return EXIT.FAILED;
}

program.parseAsync().catch((err: unknown) => {
  const code = exitCodeOf(err);
  // Commander has already printed its own message (and the help) to stderr.
  if (!(err instanceof CommanderError)) {
    console.error(`governed: ${err instanceof Error ? err.message : String(err)}`);
    // Under --json the API's own error answer goes to stdout too, for machines to read.
    if (err instanceof ApiError && program.opts().json && typeof err.body === 'object') printJson(err.body);
  }
  process.exitCode = code;
});

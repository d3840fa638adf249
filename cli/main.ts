import { CommanderError } from 'commander';
import { ApiError } from './api-client';
import { CliError, EXIT } from './exit-codes';
import { printJson } from './format';
import { buildProgram } from './program';

const program = buildProgram();

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

/**
 * The CLI's exit codes, one meaning each, so a script can tell "the run failed" from "you typed
 * it wrong" from "the API is not there". `governed --help` prints the same table.
 */
export const EXIT = {
  OK: 0,
  /** The run failed, or the API answered with an error (4xx/5xx). */
  FAILED: 1,
  /** The command line is wrong: unknown command or option, a bad value, a missing key or file. */
  USAGE: 2,
  /** No answer from the API: connection refused, DNS, timeout. */
  UNREACHABLE: 3,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export const EXIT_CODES_HELP = `Exit codes:
  0  ok (for runs watch and runs submit --watch: the run COMPLETED; reports stale: also when there are no stale runs)
  1  the run failed, or the API said no (its error is printed)
  2  usage error (unknown command or option, bad value, no API key, a config file group or others can read)
  3  cannot reach the API (tenants create, keys create, --name: the database)`;

/** An error the CLI reports as one line and ends with its exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
  ) {
    super(message);
  }
}

export class UsageError extends CliError {
  constructor(message: string) {
    super(message, EXIT.USAGE);
  }
}

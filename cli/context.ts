import type { Command } from 'commander';
import { ApiClient } from './api-client';
import { printJson } from './format';

/** The root program's options, read by every command wherever on the line they were given. */
export interface GlobalOptions {
  apiUrl: string;
  apiKey?: string;
  json?: boolean;
}

export interface Context {
  api: ApiClient;
  json: boolean;
  /** Prints the API's answer as JSON under `--json`, the human rendering of it otherwise. */
  print(raw: unknown, human: () => string): void;
}

export function contextOf(command: Command): Context {
  const options = command.optsWithGlobals<GlobalOptions>();
  const json = Boolean(options.json);
  return {
    api: new ApiClient({ baseUrl: options.apiUrl, apiKey: options.apiKey }),
    json,
    print(raw, human) {
      if (json) printJson(raw);
      else process.stdout.write(`${human()}\n`);
    },
  };
}

/** For repeatable options: `--step a --step b` → ['a', 'b']. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

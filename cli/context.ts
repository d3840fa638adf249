import type { Command } from 'commander';
import { ApiClient } from './api-client';
import { printJson } from './format';
import { settingsFor } from './profile';

/** The root program's options, read by every command wherever on the line they were given. */
export interface GlobalOptions {
  apiUrl?: string;
  apiKey?: string;
  profile?: string;
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
  let api: ApiClient | undefined;
  return {
    // Resolved on first use (flag > env > profile file > default), so a command that needs no API
    // (tenants create, config) neither reads the profile file nor is refused over its mode.
    get api() {
      if (!api) {
        const settings = settingsFor({ apiUrl: options.apiUrl, apiKey: options.apiKey, profile: options.profile });
        api = new ApiClient({ baseUrl: settings.apiUrl.value, apiKey: settings.apiKey.value });
      }
      return api;
    },
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

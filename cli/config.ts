import { Argument, type Command } from 'commander';
import type { GlobalOptions } from './context';
import { UsageError } from './exit-codes';
import { fields, printJson } from './format';
import { configPath, DEFAULT_PROFILE, maskKey, setProfileValue, settingsFor, sourceText } from './profile';

/**
 * `governed config`: the profile file's API URL and key. The key is read from stdin or typed at a
 * prompt that does not echo, never taken from the command line, where shell history would keep it.
 */
export function registerConfigCommands(program: Command): void {
  const config = program
    .command('config')
    .description(`the API URL and key kept in ${displayPath()} (per --profile; flags and GOVERNED_* variables win over it)`);

  config
    .command('set')
    .description("store a value in the profile: 'api-url URL', or 'api-key' read from stdin or a hidden prompt")
    .addArgument(new Argument('<name>', 'what to set').choices(['api-url', 'api-key']))
    .argument('[value]', 'the URL (api-url only: a key is never taken from the command line)')
    .addHelpText(
      'after',
      `
Examples:
  governed config set api-url https://governed.example.com
  governed config set api-key                     # prompts; nothing is echoed
  printf %s "$KEY" | governed config set api-key  # from a pipe
  governed --profile staging config set api-url https://staging.example.com`,
    )
    .action(async (name: 'api-url' | 'api-key', value: string | undefined, _options: unknown, command: Command) => {
      const options = command.optsWithGlobals<GlobalOptions>();
      const profile = options.profile || process.env.GOVERNED_PROFILE || DEFAULT_PROFILE;
      const file = configPath();
      let stored: string;
      if (name === 'api-url') {
        if (!value) throw new UsageError('config set api-url needs the URL: governed config set api-url https://…');
        stored = parseUrl(value);
      } else {
        if (value !== undefined) {
          throw new UsageError("config set api-key takes the key from stdin or a prompt, not from the command line (your shell's history would keep it): run 'governed config set api-key' and paste it");
        }
        stored = await readSecret('API key: ');
        if (!stored) throw new UsageError('no API key given (empty input)');
      }
      const { previousMode } = setProfileValue(file, profile, name === 'api-url' ? 'apiUrl' : 'apiKey', stored);
      if (previousMode !== undefined) console.error(`governed: ${file} was mode 0${previousMode.toString(8)}; it is 0600 now`);
      const shown = name === 'api-key' ? maskKey(stored) : stored;
      if (options.json) printJson({ file, profile, [name === 'api-url' ? 'apiUrl' : 'apiKey']: shown });
      else process.stdout.write(`${name} of profile '${profile}' set to ${shown} (${file})\n`);
    });

  config
    .command('show')
    .description('the API URL and key this command line would use, and where each comes from (the key masked)')
    .action((_options: unknown, command: Command) => {
      const options = command.optsWithGlobals<GlobalOptions>();
      const settings = settingsFor({ apiUrl: options.apiUrl, apiKey: options.apiKey, profile: options.profile });
      const key = settings.apiKey.value === undefined ? undefined : maskKey(settings.apiKey.value);
      if (options.json) {
        printJson({
          file: settings.file,
          profile: settings.profile,
          apiUrl: settings.apiUrl,
          apiKey: { value: key ?? null, source: settings.apiKey.source },
        });
        return;
      }
      process.stdout.write(
        `${fields([
          ['file', settings.file],
          ['profile', settings.profile],
          ['api-url', `${settings.apiUrl.value} (${sourceText(settings.apiUrl, settings, 'GOVERNED_API_URL')})`],
          ['api-key', key ? `${key} (${sourceText(settings.apiKey, settings, 'GOVERNED_API_KEY')})` : "not set (governed config set api-key)"],
        ])}\n`,
      );
    });
}

function displayPath(): string {
  return process.env.XDG_CONFIG_HOME ? '$XDG_CONFIG_HOME/governed/config.json' : '~/.config/governed/config.json';
}

function parseUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`not a URL: ${value}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`the API URL must be http or https: ${value}`);
  return value.replace(/\/+$/, '');
}

/** All of stdin when it is not a terminal; else a prompt on stderr whose typing is not echoed. */
async function readSecret(prompt: string): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    let text = '';
    stdin.setEncoding('utf8');
    for await (const chunk of stdin) text += chunk;
    return text.trim();
  }
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  stdin.resume();
  try {
    return await new Promise<string>((resolve, reject) => {
      let typed = '';
      stdin.on('data', (chunk: string) => {
        for (const ch of chunk) {
          if (ch === '\r' || ch === '\n' || ch === '\u0004') {
            resolve(typed.trim());
            return;
          }
          if (ch === '\u0003') {
            reject(new UsageError('cancelled'));
            return;
          }
          if (ch === '\u007f' || ch === '\b') typed = typed.slice(0, -1);
          else typed += ch;
        }
      });
    });
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    stdin.removeAllListeners('data');
    process.stderr.write('\n');
  }
}

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_API_URL } from './api-client';
import { UsageError } from './exit-codes';

/**
 * The CLI's profile file: `$XDG_CONFIG_HOME/governed/config.json` (default ~/.config/governed),
 * one API URL and key per profile. It holds a key, so it is written 0600 in a 0700 directory, and,
 * like ssh with a private key, a file group or others can open is refused (exit 2) rather than used.
 * Precedence for each value: flag > environment > the profile in the file > default.
 */

export const DEFAULT_PROFILE = 'default';

export interface Profile {
  apiUrl?: string;
  apiKey?: string;
}

export interface ConfigFile {
  profiles: Record<string, Profile>;
}

export type Source = 'flag' | 'env' | 'config' | 'default' | 'unset';

export interface Setting {
  value: string | undefined;
  source: Source;
}

export interface Settings {
  file: string;
  profile: string;
  apiUrl: Setting & { value: string };
  apiKey: Setting;
}

/** Where the file is: XDG_CONFIG_HOME when set to an absolute path (the XDG rule), else ~/.config. */
export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CONFIG_HOME;
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(env.HOME || os.homedir(), '.config');
  return path.join(base, 'governed', 'config.json');
}

/** Group or others may read or write it: the refusal ssh makes for a private key. */
export function exposedMode(mode: number): boolean {
  return process.platform !== 'win32' && (mode & 0o077) !== 0;
}

const octal = (mode: number) => `0${(mode & 0o777).toString(8)}`;

/**
 * The file, or null when there is none. Refuses (UsageError, exit 2) a file others can open unless
 * `checkMode` is false (only `config set`, which rewrites it 0600), and a file that is not ours.
 */
export function readConfigFile(file: string, options: { checkMode?: boolean } = {}): ConfigFile | null {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
  }
  if (options.checkMode !== false && exposedMode(stat.mode)) {
    throw new UsageError(
      `${file} has mode ${octal(stat.mode)}: group or others can read the API key in it, so it is not used. ` +
        `Run 'chmod 600 ${file}' (or 'governed config set …', which rewrites it 0600)`,
    );
  }
  const text = fs.readFileSync(file, 'utf8');
  return parseConfig(text, file);
}

export function parseConfig(text: string, file: string): ConfigFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  const profiles = (raw as { profiles?: unknown } | null)?.profiles;
  if (typeof profiles !== 'object' || profiles === null || Array.isArray(profiles)) {
    throw new UsageError(`${file} has no "profiles" object (expected {"profiles":{"default":{"apiUrl":…,"apiKey":…}}})`);
  }
  const out: Record<string, Profile> = {};
  for (const [name, value] of Object.entries(profiles as Record<string, unknown>)) {
    const p = (value ?? {}) as Record<string, unknown>;
    out[name] = {
      ...(typeof p.apiUrl === 'string' ? { apiUrl: p.apiUrl } : {}),
      ...(typeof p.apiKey === 'string' ? { apiKey: p.apiKey } : {}),
    };
  }
  return { profiles: out };
}

export interface ResolveInput {
  /** What the command line gave (`--api-url`, `--api-key`, `--profile`). */
  flags: { apiUrl?: string; apiKey?: string; profile?: string };
  env: NodeJS.ProcessEnv;
  /** Reads the file; called only when a value is not given by flag or environment. */
  load: () => ConfigFile | null;
  file: string;
}

/** flag > env (GOVERNED_API_URL, GOVERNED_API_KEY) > the profile (--profile, GOVERNED_PROFILE, 'default') > default. */
export function resolveSettings(input: ResolveInput): Settings {
  const { flags, env } = input;
  const profileGiven = flags.profile || env.GOVERNED_PROFILE || undefined;
  const profile = profileGiven ?? DEFAULT_PROFILE;
  const direct = (flag: string | undefined, envName: string): Setting | undefined => {
    if (flag) return { value: flag, source: 'flag' };
    const fromEnv = env[envName];
    if (fromEnv) return { value: fromEnv, source: 'env' };
    return undefined;
  };
  const url = direct(flags.apiUrl, 'GOVERNED_API_URL');
  const key = direct(flags.apiKey, 'GOVERNED_API_KEY');
  let stored: Profile = {};
  if (!url || !key) {
    const config = input.load();
    const found = config?.profiles[profile];
    // A profile asked for by name that is not there is a mistake; the default one may be absent.
    if (!found && profileGiven && profile !== DEFAULT_PROFILE) {
      throw new UsageError(`no profile '${profile}' in ${input.file} (create it: governed --profile ${profile} config set api-url URL)`);
    }
    stored = found ?? {};
  }
  const fromFile = (value: string | undefined): Setting | undefined => (value ? { value, source: 'config' } : undefined);
  const apiUrl = url ?? fromFile(stored.apiUrl) ?? { value: DEFAULT_API_URL, source: 'default' as const };
  const apiKey = key ?? fromFile(stored.apiKey) ?? { value: undefined, source: 'unset' as const };
  return { file: input.file, profile, apiUrl: apiUrl as Settings['apiUrl'], apiKey };
}

/** The settings the process would use: its flags, its environment, the file at its path. */
export function settingsFor(flags: ResolveInput['flags'], env: NodeJS.ProcessEnv = process.env): Settings {
  const file = configPath(env);
  return resolveSettings({ flags, env, file, load: () => readConfigFile(file) });
}

/**
 * Sets one value of one profile: the directory is made 0700, the file written 0600 (a new file
 * renamed over the old, so no reader sees half of it). Answers the mode it had, when that was open
 * to others, so the caller can say it was tightened.
 */
export function setProfileValue(file: string, profile: string, name: keyof Profile, value: string): { previousMode?: number } {
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dir, 0o700);
  let previousMode: number | undefined;
  try {
    const mode = fs.statSync(file).mode;
    if (exposedMode(mode)) previousMode = mode & 0o777;
  } catch {
    // no file yet
  }
  const config = readConfigFile(file, { checkMode: false }) ?? { profiles: {} };
  config.profiles[profile] = { ...config.profiles[profile], [name]: value };
  const temp = path.join(dir, `.config.json.${process.pid}.tmp`);
  fs.writeFileSync(temp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600, flag: 'w' });
  fs.chmodSync(temp, 0o600);
  fs.renameSync(temp, file);
  return previousMode === undefined ? {} : { previousMode };
}

/** Enough of a key to tell which one it is: its prefix and last four characters. */
export function maskKey(key: string): string {
  if (key.length < 12) return '****';
  const prefix = /^[a-z]+_/i.exec(key)?.[0] ?? '';
  return `${prefix}****${key.slice(-4)}`;
}

/** Sources as `config show` names them. */
export function sourceText(setting: Setting, settings: Pick<Settings, 'profile'>, envName: string): string {
  switch (setting.source) {
    case 'flag':
      return 'from the command line';
    case 'env':
      return `from ${envName}`;
    case 'config':
      return `from profile '${settings.profile}'`;
    case 'default':
      return 'default';
    case 'unset':
      return 'not set';
  }
}

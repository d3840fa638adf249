import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../cli/exit-codes';
import { configPath, maskKey, readConfigFile, resolveSettings, setProfileValue, type ConfigFile } from '../../cli/profile';

const FILE = '/home/u/.config/governed/config.json';
const stored: ConfigFile = {
  profiles: {
    default: { apiUrl: 'http://from-file:1', apiKey: 'gr_fileDefaultKey0001' },
    staging: { apiUrl: 'http://staging:2', apiKey: 'gr_fileStagingKey0002' },
  },
};

function resolve(flags: { apiUrl?: string; apiKey?: string; profile?: string }, env: NodeJS.ProcessEnv, config: ConfigFile | null = stored) {
  let loads = 0;
  const settings = resolveSettings({
    flags,
    env,
    file: FILE,
    load: () => {
      loads++;
      return config;
    },
  });
  return { settings, loads };
}

describe('config precedence: flag > env > profile file > default', () => {
  it('takes each value from the first place that has it', () => {
    expect(resolve({ apiUrl: 'http://flag:9', apiKey: 'gr_flag' }, { GOVERNED_API_URL: 'http://env:8', GOVERNED_API_KEY: 'gr_env' }).settings).toMatchObject({
      apiUrl: { value: 'http://flag:9', source: 'flag' },
      apiKey: { value: 'gr_flag', source: 'flag' },
    });
    expect(resolve({}, { GOVERNED_API_URL: 'http://env:8', GOVERNED_API_KEY: 'gr_env' }).settings).toMatchObject({
      apiUrl: { value: 'http://env:8', source: 'env' },
      apiKey: { value: 'gr_env', source: 'env' },
    });
    expect(resolve({}, { GOVERNED_API_KEY: 'gr_env' }).settings).toMatchObject({
      apiUrl: { value: 'http://from-file:1', source: 'config' },
      apiKey: { value: 'gr_env', source: 'env' },
    });
    expect(resolve({}, {}, null).settings).toMatchObject({
      profile: 'default',
      apiUrl: { value: 'http://127.0.0.1:8080', source: 'default' },
      apiKey: { value: undefined, source: 'unset' },
    });
  });

  it('does not read the file when flags and environment give both values', () => {
    expect(resolve({ apiUrl: 'http://flag:9' }, { GOVERNED_API_KEY: 'gr_env' }).loads).toBe(0);
    expect(resolve({ apiUrl: 'http://flag:9' }, {}).loads).toBe(1);
  });

  it('reads the profile named by --profile, else GOVERNED_PROFILE, else default', () => {
    expect(resolve({ profile: 'staging' }, { GOVERNED_PROFILE: 'nope' }).settings).toMatchObject({ profile: 'staging', apiUrl: { value: 'http://staging:2' } });
    expect(resolve({}, { GOVERNED_PROFILE: 'staging' }).settings).toMatchObject({ profile: 'staging', apiKey: { value: 'gr_fileStagingKey0002', source: 'config' } });
    expect(resolve({}, {}).settings.apiKey.value).toBe('gr_fileDefaultKey0001');
  });

  it('refuses a profile asked for by name that the file does not have; an absent default is no error', () => {
    expect(() => resolve({ profile: 'prod' }, {})).toThrow(UsageError);
    expect(() => resolve({ profile: 'prod' }, {})).toThrow(/no profile 'prod'/);
    expect(() => resolve({}, { GOVERNED_PROFILE: 'prod' }, null)).toThrow(/no profile 'prod'/);
    expect(resolve({}, {}, { profiles: {} }).settings.apiUrl.source).toBe('default');
  });

  it('is under XDG_CONFIG_HOME when that is an absolute path, else ~/.config', () => {
    expect(configPath({ XDG_CONFIG_HOME: '/x/conf', HOME: '/home/u' })).toBe('/x/conf/governed/config.json');
    expect(configPath({ XDG_CONFIG_HOME: 'relative', HOME: '/home/u' })).toBe('/home/u/.config/governed/config.json');
    expect(configPath({ HOME: '/home/u' })).toBe('/home/u/.config/governed/config.json');
  });

  it('masks a key to its prefix and last four characters', () => {
    expect(maskKey('gr_abcdefghijklmnopqrstuvwxyz1234')).toBe('gr_****1234');
    expect(maskKey('short')).toBe('****');
  });
});

describe.skipIf(process.platform === 'win32')('the profile file on disk', () => {
  const temp = () => path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'governed-config-')), 'governed', 'config.json');
  const mode = (p: string) => fs.statSync(p).mode & 0o777;

  it('is written 0600 in a 0700 directory, one profile beside the others', () => {
    const file = temp();
    setProfileValue(file, 'default', 'apiUrl', 'http://a:1');
    setProfileValue(file, 'default', 'apiKey', 'gr_secret_default_0001');
    setProfileValue(file, 'staging', 'apiUrl', 'http://b:2');
    expect(mode(file)).toBe(0o600);
    expect(mode(path.dirname(file))).toBe(0o700);
    expect(readConfigFile(file)).toEqual({
      profiles: { default: { apiUrl: 'http://a:1', apiKey: 'gr_secret_default_0001' }, staging: { apiUrl: 'http://b:2' } },
    });
  });

  it('is refused when group or others can open it, and set rewrites it 0600', () => {
    const file = temp();
    setProfileValue(file, 'default', 'apiKey', 'gr_secret_default_0001');
    fs.chmodSync(file, 0o644);
    expect(() => readConfigFile(file)).toThrow(UsageError);
    expect(() => readConfigFile(file)).toThrow(/mode 0644.*chmod 600/);
    fs.chmodSync(file, 0o640);
    expect(() => readConfigFile(file)).toThrow(/mode 0640/);
    expect(setProfileValue(file, 'default', 'apiUrl', 'http://a:1')).toEqual({ previousMode: 0o640 });
    expect(mode(file)).toBe(0o600);
    expect(readConfigFile(file)?.profiles.default).toEqual({ apiKey: 'gr_secret_default_0001', apiUrl: 'http://a:1' });
  });

  it('is absent without error, and unreadable JSON is a usage error', () => {
    const file = temp();
    expect(readConfigFile(file)).toBeNull();
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, '{not json', { mode: 0o600 });
    expect(() => readConfigFile(file)).toThrow(/not valid JSON/);
  });
});

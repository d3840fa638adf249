import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { GOVERNED_BIN, governed, type CliResult } from './helpers/governed-cli';

/**
 * The real binary against a stub of the API (it answers what each test sets, and records who asked
 * with which key): --version, the profile file (config set/show, precedence, modes, --profile),
 * reports stale's one answer for no stale runs, and `npm run tenant` as an alias of governed tenants.
 */

interface Seen {
  server: string;
  path: string;
  authorization?: string;
}

const seen: Seen[] = [];
let answer: { status: number; body: unknown } = { status: 200, body: {} };
const servers: http.Server[] = [];
let urlA: string;
let urlB: string;

async function stub(name: string): Promise<string> {
  const server = http.createServer((req, res) => {
    seen.push({ server: name, path: req.url ?? '', authorization: req.headers.authorization });
    res.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  urlA = await stub('A');
  urlB = await stub('B');
});
afterAll(() => servers.forEach((s) => s.close()));

/** A home of its own: no GOVERNED_* variable of the caller leaks in. */
function home(): Record<string, string | undefined> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'governed-home-'));
  return { HOME: dir, XDG_CONFIG_HOME: path.join(dir, 'xdg'), GOVERNED_API_URL: undefined, GOVERNED_API_KEY: undefined, GOVERNED_PROFILE: undefined };
}

/** The binary with `input` on its stdin (a pipe, not a terminal). */
function withInput(args: string[], env: Record<string, string | undefined>, input: string): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [GOVERNED_BIN, ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input);
  });
}

const SLOW = { timeout: 240_000 };

describe('governed --version', SLOW, () => {
  it("prints package.json's version", async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string };
    expect(await governed(['--version'], home())).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
  });
});

describe('governed config', SLOW, () => {
  it('stores the URL and the key (from stdin, never argv) 0600, shows the key masked, and uses them', async () => {
    const env = home();
    const file = path.join(env.XDG_CONFIG_HOME!, 'governed', 'config.json');
    expect(await governed(['config', 'set', 'api-url', urlA], env)).toMatchObject({ code: 0 });
    const refused = await governed(['config', 'set', 'api-key', 'gr_onTheCommandLine0000'], env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("not from the command line (your shell's history would keep it)");
    expect(await withInput(['config', 'set', 'api-key'], env, 'gr_fromStdinSecret1234\n')).toMatchObject({ code: 0, stdout: expect.stringContaining('gr_****1234') });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);

    const shown = await governed(['config', 'show'], env);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(new RegExp(`api-url\\s+${urlA} \\(from profile 'default'\\)`));
    expect(shown.stdout).toMatch(/api-key\s+gr_\*\*\*\*1234 \(from profile 'default'\)/);
    expect(shown.stdout).not.toContain('gr_fromStdinSecret1234');

    answer = { status: 200, body: { runs: [], nextCursor: null } };
    seen.length = 0;
    expect(await governed(['runs', 'list', '--json'], env)).toMatchObject({ code: 0 });
    expect(seen).toEqual([{ server: 'A', path: expect.stringMatching(/^\/api\/v1\/runs/), authorization: 'Bearer gr_fromStdinSecret1234' }]);
  });

  it('lets the environment win over the file, and a flag over the environment', async () => {
    const env = home();
    await governed(['config', 'set', 'api-url', urlA], env);
    await withInput(['config', 'set', 'api-key'], env, 'gr_fileKey_000000001');
    answer = { status: 200, body: { runs: [], nextCursor: null } };
    seen.length = 0;
    await governed(['runs', 'list'], { ...env, GOVERNED_API_URL: urlB });
    await governed(['runs', 'list', '--api-url', urlA, '--api-key', 'gr_flagKey'], { ...env, GOVERNED_API_URL: urlB, GOVERNED_API_KEY: 'gr_envKey' });
    expect(seen.map((s) => [s.server, s.authorization])).toEqual([
      ['B', 'Bearer gr_fileKey_000000001'],
      ['A', 'Bearer gr_flagKey'],
    ]);
    const shown = JSON.parse((await governed(['config', 'show', '--json'], { ...env, GOVERNED_API_KEY: 'gr_envKey_12345678' })).stdout);
    expect(shown).toMatchObject({ profile: 'default', apiUrl: { value: urlA, source: 'config' }, apiKey: { value: 'gr_****5678', source: 'env' } });
  });

  it('keeps several profiles in one file, chosen by --profile or GOVERNED_PROFILE', async () => {
    const env = home();
    await governed(['config', 'set', 'api-url', urlA], env);
    await governed(['--profile', 'staging', 'config', 'set', 'api-url', urlB], env);
    await withInput(['config', 'set', 'api-key', '--profile', 'staging'], env, 'gr_stagingKey_0000001');
    answer = { status: 200, body: { runs: [], nextCursor: null } };
    seen.length = 0;
    await governed(['runs', 'list', '--profile', 'staging'], env);
    await governed(['runs', 'list'], { ...env, GOVERNED_PROFILE: 'staging' });
    expect(seen.map((s) => [s.server, s.authorization])).toEqual([
      ['B', 'Bearer gr_stagingKey_0000001'],
      ['B', 'Bearer gr_stagingKey_0000001'],
    ]);
    const missing = await governed(['runs', 'list', '--profile', 'prod'], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("no profile 'prod'");
  });

  it.skipIf(process.platform === 'win32')('refuses a file group or others can read: exit 2, saying how to fix it', async () => {
    const env = home();
    await withInput(['config', 'set', 'api-key'], env, 'gr_exposedKey_000001');
    const file = path.join(env.XDG_CONFIG_HOME!, 'governed', 'config.json');
    fs.chmodSync(file, 0o644);
    seen.length = 0;
    const refused = await governed(['runs', 'list', '--api-url', urlA], env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`${file} has mode 0644`);
    expect(refused.stderr).toContain(`chmod 600 ${file}`);
    expect(seen).toEqual([]);
    // Given the key elsewhere, the file is not read, so not refused.
    expect((await governed(['runs', 'list', '--api-url', urlA, '--api-key', 'gr_flag'], env)).code).toBe(0);
  });
});

describe('governed reports stale', SLOW, () => {
  const env = () => ({ ...home(), GOVERNED_API_URL: urlA, GOVERNED_API_KEY: 'gr_any' });

  it("exits 0 with 'no stale runs' for every empty state: no report yet (404, or [] under --limit) or a report naming none of yours", async () => {
    answer = { status: 404, body: { code: 'REPORT_NOT_FOUND', error: 'no stale-run report has been written yet', status: 404 } };
    const latest = await governed(['reports', 'stale'], env());
    expect(latest).toMatchObject({ code: 0, stdout: 'no stale runs (no stale-run report has been written yet)\n' });
    const json = await governed(['reports', 'stale', '--json'], env());
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual({ reports: [] });

    answer = { status: 200, body: { reports: [] } };
    expect(await governed(['reports', 'stale', '--limit', '5'], env())).toMatchObject({ code: 0, stdout: 'no stale runs (no stale-run report has been written yet)\n' });

    answer = { status: 200, body: { id: 'r9', generatedAt: '2026-11-24T11:00:00.000Z', staleCount: 0, runs: [] } };
    expect(await governed(['reports', 'stale'], env())).toMatchObject({ code: 0, stdout: expect.stringMatching(/^no stale runs \(latest report r9/) });

    // Any other error is still one.
    answer = { status: 404, body: { code: 'NOT_FOUND', error: 'no such route' } };
    expect((await governed(['reports', 'stale'], env())).code).toBe(1);
  });
});

describe('npm run tenant', SLOW, () => {
  it('says it is deprecated in one line and runs governed tenants, the same code', async () => {
    const tsx = require.resolve('tsx/cli', { paths: [path.join(__dirname, '..')] });
    const script = path.join(__dirname, '..', 'cli', 'operator', 'tenant.ts');
    const result = await new Promise<CliResult>((resolve) => {
      execFile(process.execPath, [tsx, script, 'key', '--name', 'acme'], { env: { ...process.env, DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' }, timeout: 60_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
      );
    });
    const lines = result.stderr.trim().split('\n');
    expect(lines[0]).toBe('npm run tenant is deprecated; running: governed tenants keys create --name acme');
    expect(lines[1]).toContain('cannot use the database at postgres://postgres@127.0.0.1:1/none (ECONNREFUSED');
    expect(lines[1]).toContain('operator action on the database, not the API: set DATABASE_URL');
    expect(result.code).toBe(3);
  });
});

describe('governed tenants, the operator commands on DATABASE_URL', SLOW, () => {
  it('creates a tenant, issues a key with keys create, and suspends and activates it by name', async () => {
    const name = `cfg-${randomUUID().slice(0, 8)}`;
    const env = { ...home(), DATABASE_URL: inject('databaseUrl'), TEMPORAL_ADDRESS: inject('temporalAddress') };
    const created = JSON.parse((await governed(['tenants', 'create', '--name', name, '--json'], env)).stdout);
    expect(created).toEqual({ tenantId: expect.any(String), apiKey: expect.stringMatching(/^gr_/) });
    const key = await governed(['tenants', 'keys', 'create', '--name', name, '--role', 'viewer'], env);
    expect(key).toMatchObject({ code: 0, stdout: expect.stringMatching(/^api key \(viewer, shown once\): gr_\S+\n$/) });
    const suspended = await governed(['tenants', 'suspend', '--name', name], env);
    expect(suspended).toMatchObject({ code: 0, stdout: expect.stringMatching(new RegExp(`^tenant ${name} is suspended\n`)) });
    expect(JSON.parse((await governed(['tenants', 'activate', '--name', name, '--json'], env)).stdout)).toEqual({ tenantId: created.tenantId, status: 'active' });
  });
});

import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { staleRunReports } from '../db/schema';
import { deadApiUrl, governed, governedOnTerminal, scriptCommand, type CliResult } from './helpers/governed-cli';
import { waitForPause } from './helpers/runs';
import { startStack, type Stack, type TestTenant } from './helpers/stack';

let stack: Stack;
let tenant: TestTenant;
let env: Record<string, string>;

beforeAll(async () => {
  stack = await startStack();
  tenant = await stack.createTenant();
  env = { GOVERNED_API_URL: stack.baseUrl, GOVERNED_API_KEY: tenant.apiKey };
});
afterAll(() => stack?.close());

/** Every call starts Node with tsx's loader: one to ten seconds each on a loaded two-core machine. */
const SLOW_CALLS = { timeout: 240_000 };

/** The binary, as this file's tenant. */
const cli = (...args: string[]) => governed(args, env);

function expectOk(result: CliResult): CliResult {
  expect(result, `stderr: ${result.stderr}`).toMatchObject({ code: 0 });
  return result;
}

function json(result: CliResult): any {
  return JSON.parse(expectOk(result).stdout);
}

/** One line: the shell has taken the quotes, as it would from `--step sim.llm:"plan a trip"`. */
/** Slow enough for a watch polling a loaded machine to see it running. */
const SLOW_STEP = 'sim.llm:{"prompt":"a slow step","latencyMs":3000}';
const FAILING_STEP = 'sim.llm:{"prompt":"this step fails","fail":true}';

/**
 * Many short steps: a pause or stop lands before the next one wherever the run is, so the test
 * does not race a CLI that takes seconds to start on a loaded machine.
 */
const LONG_PLAN_STEPS = 24;

function longPlanFile(): string {
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'governed-plan-')), 'plan.json');
  const plan = Array.from({ length: LONG_PLAN_STEPS }, (_, i) => ({ skill: 'sim.llm', input: { prompt: `step ${i}`, latencyMs: 300 } }));
  writeFileSync(file, JSON.stringify({ plan }));
  return file;
}

describe('governed runs', SLOW_CALLS, () => {
  it('submits from --step flags, prints the id, then gets and lists the run', async () => {
    const submitted = expectOk(await cli('runs', 'submit', '--step', 'sim.llm:plan a trip', '--step', 'sim.llm:summarize', '--budget', '1.5', '--idempotency-key', `cli-${randomUUID()}`));
    const runId = submitted.stdout.trim();
    expect(runId).toMatch(/^[0-9a-f-]{36}$/);
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'COMPLETED', budgetUsd: 1.5, stepsCompleted: 2 });
    expect(run.plan).toEqual([
      { skill: 'sim.llm', input: { prompt: 'plan a trip' } },
      { skill: 'sim.llm', input: { prompt: 'summarize' } },
    ]);

    const shown = expectOk(await cli('runs', 'get', runId));
    expect(shown.stdout).toMatch(new RegExp(`run\\s+${runId}`));
    expect(shown.stdout).toMatch(/phase\s+COMPLETED \(succeeded\)/);
    expect(shown.stdout).toMatch(/steps\s+2 of 2 \(sim.llm, sim.llm\)/);
    expect(shown.stdout).toMatch(/of \$1\.50 budget/);
    expect(json(await cli('runs', 'get', runId, '--json'))).toMatchObject({ run: { id: runId, phase: 'COMPLETED' }, live: null });

    const listed = expectOk(await cli('runs', 'list', '--phase', 'COMPLETED'));
    expect(listed.stdout.split('\n')[0]).toMatch(/^RUN\s+PHASE\s+STATUS\s+STEPS\s+COST/);
    expect(listed.stdout).toContain(runId);
    const page = json(await cli('--json', 'runs', 'list', '--status', 'succeeded', '--limit', '200'));
    expect(page.runs.map((r: { runId: string }) => r.runId)).toContain(runId);
  });

  it('submits a plan file with --json and pages the list with --cursor', async () => {
    const own = await stack.createTenant();
    const ownEnv = { GOVERNED_API_URL: stack.baseUrl, GOVERNED_API_KEY: own.apiKey };
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'governed-plan-')), 'plan.json');
    writeFileSync(file, JSON.stringify({ plan: [{ skill: 'sim.llm', input: { prompt: 'from a file' } }], budgetUsd: 0.5 }));
    const first = JSON.parse(expectOk(await governed(['runs', 'submit', '--file', file, '--json'], ownEnv)).stdout);
    expect(first).toMatchObject({ authorizationDecision: 'ALLOWED', workflow: 'started' });
    const second = JSON.parse(expectOk(await governed(['runs', 'submit', '--file', file, '--budget', '0.25', '--json'], ownEnv)).stdout);
    expect((await stack.waitForPhase(second.runId, 'terminal')).budgetUsd).toBe(0.25);

    const one = expectOk(await governed(['runs', 'list', '--limit', '1'], ownEnv));
    const cursor = /more: --cursor (\S+)/.exec(one.stdout)?.[1];
    expect(one.stdout).toContain(second.runId);
    expect(cursor).toBeDefined();
    const next = JSON.parse(expectOk(await governed(['runs', 'list', '--limit', '1', '--cursor', cursor!, '--json'], ownEnv)).stdout);
    expect(next).toEqual({ runs: [expect.objectContaining({ runId: first.runId })], nextCursor: null });
  });

  it('pauses and resumes a run, then shows its audit', async () => {
    const runId = expectOk(await cli('runs', 'submit', '--file', longPlanFile())).stdout.trim();
    const pause = expectOk(await cli('runs', 'pause', runId, '--reason', 'look first', '--pause-reason', 'MANUAL_PAUSE'));
    expect(pause.stdout).toContain(`pause requested for run ${runId}`);
    await waitForPause(stack.db, runId, 60_000);
    const paused = json(await cli('runs', 'get', runId, '--json'));
    expect(paused.live.pause).toMatchObject({ reason: 'MANUAL_PAUSE' });
    expect(expectOk(await cli('runs', 'get', runId)).stdout).toMatch(/paused\s+MANUAL_PAUSE since .*, expires .* \(in \d+m \d+s\)/);

    const resumed = expectOk(await cli('runs', 'resume', runId, '--reason', 'looked'));
    expect(resumed.stdout).toMatch(new RegExp(`run ${runId} resumed: EXECUTING`));
    expect((await stack.waitForPhase(runId, 'terminal', 120_000)).phase).toBe('COMPLETED');
    // A run that ended cannot be controlled: the API's 409 and its reason, exit 1.
    const late = await cli('runs', 'resume', runId);
    expect(late).toMatchObject({ code: 1, stdout: '' });
    expect(late.stderr).toContain('run is already COMPLETED (HTTP 409)');

    const audit = expectOk(await cli('runs', 'audit', runId));
    expect(audit.stdout).toMatch(/verdict\s+COMPLETE/);
    expect(audit.stdout).toMatch(/orchestrator\/finalize_run\s+.*\s+yes\s+OK/);
    expect(json(await cli('runs', 'audit', runId, '--json'))).toMatchObject({ runId, verdict: 'COMPLETE', missing: [] });
  });

  it('stops a run before its next step', async () => {
    const runId = expectOk(await cli('runs', 'submit', '--file', longPlanFile())).stdout.trim();
    expect(expectOk(await cli('runs', 'stop', runId, '--reason', 'not needed')).stdout).toContain(`stop requested for run ${runId}`);
    const ended = await stack.waitForPhase(runId, 'terminal', 60_000);
    expect(ended).toMatchObject({ phase: 'FAILED', status: 'cancelled' });
    expect(ended.stepsCompleted).toBeLessThan(LONG_PLAN_STEPS);
    const watched = await cli('runs', 'watch', runId);
    expect(watched.code).toBe(1);
    expect(watched.stdout).toContain('FAILED (cancelled)');
  });
});

describe('governed runs watch', SLOW_CALLS, () => {
  it.skipIf(!scriptCommand())('redraws the run in place on a terminal and exits 0 when it COMPLETED', async () => {
    const screen = await governedOnTerminal(['runs', 'submit', '--step', 'sim.llm:first', '--step', SLOW_STEP, '--step', 'sim.llm:last', '--budget', '2', '--watch', '--interval', '200'], env);
    expect(screen.code, screen.stdout).toBe(0);
    const shown = screen.stdout;
    expect(shown).toMatch(/phase\s+EXECUTING \(running\)/);
    // The slow second step is on the screen while it runs, with its share of the bar filled.
    expect(shown).toMatch(/progress\s+\[█{8}░{16}\] step 2 of 3/);
    expect(shown).toMatch(/spend\s+\$0\.\d{4} of \$2\.00 budget/);
    expect(shown).toMatch(/phase\s+COMPLETED \(succeeded\)/);
    expect(shown).toMatch(/progress\s+\[█{24}\] 3 of 3 steps done/);
    expect(shown).toMatch(/result\s+COMPLETED in (\d+m )?\d+s/);
    // Redrawn in place: the cursor climbs back over the last frame; it is hidden, then shown again.
    expect(shown).toMatch(/\x1b\[\d+A/);
    expect(shown.indexOf('\x1b[?25l')).toBeLessThan(shown.lastIndexOf('\x1b[?25h'));
  });

  it.skipIf(!scriptCommand())('shows why a run FAILED and exits 1', async () => {
    const runId = expectOk(await cli('runs', 'submit', '--step', 'sim.llm:fine', '--step', FAILING_STEP)).stdout.trim();
    const screen = await governedOnTerminal(['runs', 'watch', runId, '--interval', '200'], env);
    expect(screen.code, screen.stdout).toBe(1);
    expect(screen.stdout).toMatch(/phase\s+FAILED \(failed\)/);
    expect(screen.stdout).toMatch(/result\s+FAILED \(failed\) STEP_FAILED: step 2 \(sim\.llm\) failed/);
    expect(screen.stdout).toMatch(/1 of 2 steps done/);
  });

  it('writes plain lines, one per change, when stdout is not a terminal', async () => {
    const result = await cli('runs', 'submit', '--step', SLOW_STEP, '--watch', '--interval', '200');
    expect(result.code, result.stderr).toBe(0);
    const [runId, ...lines] = result.stdout.trim().split('\n');
    expect(runId).toMatch(/^[0-9a-f-]{36}$/);
    expect(result.stdout).not.toContain('\x1b[');
    expect(lines.some((l) => /^\d\d:\d\d:\d\dZ EXECUTING · step 1 of 1 · \$/.test(l))).toBe(true);
    expect(lines.at(-1)).toMatch(/^\d\d:\d\d:\d\dZ COMPLETED in (\d+m )?\d+s · 1 of 1 steps done · \$0\.\d{4} of \$5\.00$/);
    // Nothing repeats: a line is written only when the run changed.
    expect(new Set(lines.map((l) => l.slice(10))).size).toBe(lines.length);
  });

  it('--json writes each new answer of the API as a line of JSON', async () => {
    const runId = expectOk(await cli('runs', 'submit', '--step', FAILING_STEP)).stdout.trim();
    const result = await cli('runs', 'watch', runId, '--json', '--interval', '200');
    expect(result.code).toBe(1);
    const answers = result.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(answers.at(-1)).toMatchObject({ run: { id: runId, phase: 'FAILED', errorCode: 'STEP_FAILED' } });
  });
});

describe('governed incidents, reports, policies and tenants', SLOW_CALLS, () => {
  it('lists, acknowledges and resolves an incident', async () => {
    const runId = expectOk(await cli('runs', 'submit', '--step', FAILING_STEP)).stdout.trim();
    await stack.waitForPhase(runId, 'terminal');
    const listed = expectOk(await cli('incidents', 'list', '--status', 'open', '--severity', 'HIGH,CRITICAL', '--run', runId));
    expect(listed.stdout).toMatch(/^INCIDENT\s+SEVERITY\s+STATUS\s+KIND\s+CODE\s+RUN/);
    expect(listed.stdout).toMatch(new RegExp(`HIGH\\s+open\\s+failure\\s+STEP_FAILED\\s+${runId}`));
    const [incident] = json(await cli('incidents', 'list', '--run', runId, '--json')).incidents;

    expect(expectOk(await cli('incidents', 'ack', incident.id, '--note', 'looking')).stdout).toMatch(/status\s+acknowledged\n.*\nnote\s+looking/);
    expect(json(await cli('incidents', 'resolve', incident.id, '--note', 'fixed', '--json'))).toMatchObject({ id: incident.id, status: 'resolved', note: 'fixed' });
    // Resolving again is a retry: the incident as it is, exit 0.
    const again = await cli('incidents', 'resolve', incident.id, '--json');
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ id: incident.id, status: 'resolved', note: 'fixed' });
    const late = await cli('incidents', 'ack', incident.id);
    expect(late.code).toBe(1);
    expect(late.stderr).toContain(`incident ${incident.id} is already resolved (HTTP 409)`);
    expect(expectOk(await cli('incidents', 'list', '--status', 'open', '--run', runId)).stdout.trim()).toBe('no incidents');
  });

  it('prints the stale-run reports that name the tenant\'s runs', async () => {
    const runId = expectOk(await cli('runs', 'submit', '--step', 'sim.llm:stale one')).stdout.trim();
    await stack.db.insert(staleRunReports).values({
      executionId: `cli-test-${randomUUID()}`,
      staleCount: 1,
      runs: [
        {
          runId,
          tenantId: tenant.tenantId,
          phase: 'EXECUTING',
          status: 'running',
          lastProgressAt: new Date().toISOString(),
          deadlineAt: new Date().toISOString(),
          ageSeconds: 4000,
          overdueSeconds: 400,
          temporalStatus: 'RUNNING',
          reason: 'finalize_run not acked by its deadline',
        },
      ],
    });
    const shown = expectOk(await cli('reports', 'stale', '--limit', '100'));
    expect(shown.stdout).toMatch(new RegExp(`${runId}\\s+EXECUTING\\s+RUNNING\\s+.*\\s+1h 06m\\s+6m 40s\\s+finalize_run not acked`));
    expect(json(await cli('reports', 'stale', '--limit', '100', '--json')).reports.some((r: { runs: { runId: string }[] }) => r.runs.some((x) => x.runId === runId))).toBe(true);
  });

  it('gets the policy and sets it from --set and from a file', async () => {
    const own = await stack.createTenant();
    const ownEnv = { GOVERNED_API_URL: stack.baseUrl, GOVERNED_API_KEY: own.apiKey };
    const shown = expectOk(await governed(['policies', 'get'], ownEnv));
    expect(shown.stdout).toMatch(/^policy version 1\n/);
    expect(shown.stdout).toMatch(/budgetPerRunUsd\s+5\n/);

    const set = expectOk(await governed(['policies', 'set', '--set', 'budgetPerRunUsd=3', '--set', 'allowedSkills=sim.llm', '--set', 'observabilityMode=STRICT'], ownEnv));
    expect(set.stdout).toMatch(/^policy version 2 saved; live runs told: 0/);
    const saved = JSON.parse(expectOk(await governed(['policies', 'get', '--json'], ownEnv)).stdout);
    expect(saved).toMatchObject({ version: 2, rules: { budgetPerRunUsd: 3, allowedSkills: ['sim.llm'], observabilityMode: 'STRICT', maxSteps: 50 } });

    // What `policies get --json` printed goes back as it is.
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'governed-policy-')), 'policy.json');
    writeFileSync(file, JSON.stringify({ ...saved, rules: { ...saved.rules, maxSteps: 7 } }));
    expect(JSON.parse(expectOk(await governed(['policies', 'set', '--file', file, '--json'], ownEnv)).stdout)).toMatchObject({ version: 3, rules: { maxSteps: 7 }, push: 'pushed' });

    const refused = await governed(['policies', 'set', '--set', 'budgetPerRunUsd=-1'], ownEnv);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/invalid policy: budgetPerRunUsd: .* \(HTTP 400\)/);
    const unknown = await governed(['policies', 'set', '--set', 'budget=1'], ownEnv);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("no rule 'budget'");
  });

  it('creates a tenant and a key in the database, and suspends and activates it over the API', async () => {
    const name = `cli-${randomUUID().slice(0, 8)}`;
    const dbEnv = { DATABASE_URL: inject('databaseUrl'), GOVERNED_API_URL: stack.baseUrl, GOVERNED_API_KEY: undefined };
    const created = JSON.parse(expectOk(await governed(['tenants', 'create', '--name', name, '--json'], dbEnv)).stdout);
    expect(created).toEqual({ tenantId: expect.any(String), apiKey: expect.stringMatching(/^gr_/) });
    const again = await governed(['tenants', 'create', '--name', name], dbEnv);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`tenant '${name}' already exists`);
    const viewerKey = expectOk(await governed(['tenants', 'key', '--name', name, '--role', 'viewer'], dbEnv)).stdout.match(/gr_\S+/)![0];

    const admin = { ...dbEnv, GOVERNED_API_KEY: created.apiKey };
    expect(expectOk(await governed(['tenants', 'suspend'], admin)).stdout).toBe(`tenant ${created.tenantId} is suspended; live runs told: 0\n`);
    // A suspended tenant's run is recorded, denied, and ends FAILED: the submit says so and exits 1.
    const denied = await governed(['runs', 'submit', '--step', 'sim.llm:denied'], admin);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain('authorization DENIED');
    expect(expectOk(await governed(['tenants', 'activate'], admin)).stdout).toContain('is active');

    const viewer = await governed(['runs', 'pause', denied.stdout.trim()], { ...dbEnv, GOVERNED_API_KEY: viewerKey });
    expect(viewer.code).toBe(1);
    expect(viewer.stderr).toContain("role 'viewer' may not do this");
  });
});

describe('governed, when something is wrong', SLOW_CALLS, () => {
  it('prints the API\'s error and exits 1 for a bad key', async () => {
    const result = await governed(['runs', 'list'], { ...env, GOVERNED_API_KEY: 'gr_not-a-key' });
    expect(result).toMatchObject({ code: 1, stdout: '' });
    expect(result.stderr).toBe('governed: invalid or revoked API key (HTTP 401)\n');
    const asJson = await governed(['runs', 'list', '--json'], { ...env, GOVERNED_API_KEY: 'gr_not-a-key' });
    expect(asJson.code).toBe(1);
    expect(JSON.parse(asJson.stdout)).toMatchObject({ error: 'invalid or revoked API key', code: 'API_KEY_INVALID', status: 401 });
  });

  it('exits 3 when the API cannot be reached', async () => {
    const url = await deadApiUrl();
    const result = await governed(['runs', 'get', randomUUID()], { ...env, GOVERNED_API_URL: url });
    expect(result.code).toBe(3);
    expect(result.stderr).toContain(`cannot reach the API at ${url}: ECONNREFUSED`);
    expect((await governed(['--api-url', url, 'runs', 'watch', randomUUID()], env)).code).toBe(3);
  });

  it('exits 2 on usage errors, before asking the API', async () => {
    const cases: [string[], string][] = [
      [['runs', 'lst'], "unknown command 'lst'"],
      [['runs', 'list', '--phase', 'RUNNING'], "argument 'RUNNING' is invalid"],
      [['runs', 'list', '--limit', '0'], 'must be a whole number from 1 to 200'],
      [['runs', 'submit'], 'no plan: give --file plan.json or one --step per step'],
      [['runs', 'submit', '--step', 'no-colon'], 'write it as <skill>:<text>'],
      [['runs', 'submit', '--file', 'plan.yaml'], 'YAML plans are not supported'],
      [['runs', 'submit', '--step', 'sim.llm:x', '--budget', 'lots'], 'must be a number greater than 0'],
      [[], 'Usage: governed'],
    ];
    const results = await Promise.all(cases.map(([args]) => cli(...args)));
    cases.forEach(([args, message], i) => {
      expect(results[i]!.code, args.join(' ')).toBe(2);
      expect(results[i]!.stderr, args.join(' ')).toContain(message);
    });
    const noKey = await governed(['runs', 'list'], { GOVERNED_API_URL: stack.baseUrl, GOVERNED_API_KEY: '' });
    expect(noKey).toMatchObject({ code: 2 });
    expect(noKey.stderr).toContain('no API key: set GOVERNED_API_KEY or pass --api-key');
  });

  it('documents its exit codes in --help', async () => {
    const help = expectOk(await cli('--help'));
    expect(help.stdout).toMatch(/Exit codes:\n\s+0 .*\n\s+1 .*\n\s+2 .*usage error.*\n\s+3\s+cannot reach the API/);
    expect(help.stdout).toMatch(/GOVERNED_API_URL/);
  });
});

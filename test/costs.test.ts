import { randomUUID } from 'node:crypto';
import { MockActivityEnvironment } from '@temporalio/testing';
import { inArray, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSkillActivities } from '../activities/skills';
import { costColumns } from '../core/costs';
import type { PlanStep } from '../core/plan';
import { insertRun } from '../db/runs';
import { apiKeys } from '../db/schema';
import { recordToolCallResolution } from '../db/tool-calls';
import { freshDatabase } from './helpers/fresh-database';
import { governed } from './helpers/governed-cli';
import { startLlmStub } from './helpers/llm-stub';
import { startStack, type Stack, type TestTenant } from './helpers/stack';
import { hashApiKey } from '../lib/api-keys';

/**
 * Cost attribution (issue 20, item 4): the rollups are written with each record, in its
 * transaction, once; they equal the sum of the trace rows by tenant, key, model, skill, tool and
 * hour; the report is the caller's tenant's only, validated, and exported as CSV.
 */

let database: Awaited<ReturnType<typeof freshDatabase>>;
let stack: Stack;
let llm: Awaited<ReturnType<typeof startLlmStub>>;
let tenants: TestTenant[];
/** Per tenant: its admin key (from createTenant) and a member key. */
let keys: string[][];

const MODELS = ['gpt-4o-mini', 'gpt-4o'] as const;
/** Runs through the workflow: 60 by default; `COST_TEST_RUNS=1000` for the whole load (a few minutes). */
const RUNS = Number(process.env.COST_TEST_RUNS ?? 60);

beforeAll(async () => {
  database = await freshDatabase('costs');
  llm = await startLlmStub();
  stack = await startStack({ databaseUrl: database.url, llmBaseUrl: llm.baseUrl });
  tenants = await Promise.all([stack.createTenant(), stack.createTenant()]);
  keys = await Promise.all(tenants.map(async (t) => [t.apiKey, await stack.createKey(t.tenantId, 'member')]));
});
afterAll(async () => {
  await stack?.close();
  await llm?.close();
  await database?.drop();
});

const tenantIds = () => tenants.map((t) => t.tenantId);

/** The trace rows summed by the rollups' dimensions (what a scan would say), as sorted lines. */
async function tracesSummed(): Promise<string[]> {
  const rows = await stack.db.execute<Record<string, string>>(sql`
    select r.tenant_id, coalesce(r.api_key_id::text, '') as key_id, t.model, t.skill, coalesce(t.tool, '') as tool,
           date_trunc('hour', t.created_at at time zone 'UTC')::text as hour,
           sum(t.cost_usd::numeric)::text as cost, sum(t.tokens_in)::text as tokens_in, sum(t.tokens_out)::text as tokens_out, count(*)::text as calls
    from trace_steps t join runs r on r.id = t.run_id
    where r.tenant_id in ${tenantIds()} and t.status <> 'started'
    group by 1, 2, 3, 4, 5, 6`);
  return rows.map((r) => [r.tenant_id, r.key_id, r.model, r.skill, r.tool, r.hour, Number(r.cost), r.tokens_in, r.tokens_out, r.calls].join('|')).sort();
}

/** The rollups, as the same lines. */
async function rollups(): Promise<string[]> {
  const rows = await stack.db.execute<Record<string, string>>(sql`
    select tenant_id, coalesce(key_id::text, '') as key_id, model, skill, tool, (bucket_start at time zone 'UTC')::text as hour,
           cost_usd::text as cost, tokens_in::text, tokens_out::text, calls::text
    from cost_rollups where tenant_id in ${tenantIds()}`);
  return rows.map((r) => [r.tenant_id, r.key_id, r.model, r.skill, r.tool, r.hour, Number(r.cost), r.tokens_in, r.tokens_out, r.calls].join('|')).sort();
}

/** The exact totals of both, to the digit. */
async function exactTotals() {
  const [row] = await stack.db.execute<{ traces: string; rollups: string; records: string; calls: string }>(sql`
    select (select sum(t.cost_usd::numeric) from trace_steps t join runs r on r.id = t.run_id where r.tenant_id in ${tenantIds()} and t.status <> 'started')::text as traces,
           (select sum(cost_usd) from cost_rollups where tenant_id in ${tenantIds()})::text as rollups,
           (select count(*) from trace_steps t join runs r on r.id = t.run_id where r.tenant_id in ${tenantIds()} and t.status <> 'started')::text as records,
           (select sum(calls) from cost_rollups where tenant_id in ${tenantIds()})::text as calls`);
  return row!;
}

function chatStep(model: string, prompt: string): PlanStep {
  return { skill: 'llm.chat', input: { model, messages: [{ role: 'user', content: prompt }] } };
}

describe('cost rollups', () => {
  it(`equal the trace steps of ${RUNS} runs through the workflow, by tenant, key, model, skill and hour`, { timeout: 240_000 + RUNS * 1000 }, async () => {
    const runIds: string[] = [];
    for (let batch = 0; batch * 20 < RUNS; batch++) {
      runIds.push(
        ...(await Promise.all(
          Array.from({ length: Math.min(20, RUNS - batch * 20) }, (_, j) => {
            const i = batch * 20 + j;
            const plan = [{ skill: 'sim.llm', input: { prompt: `run ${i} `.repeat(1 + (i % 5)) } }, chatStep(MODELS[i % 2]!, `question ${i}`)];
            return stack.submitRun(keys[i % 2]![(i >> 1) % 2]!, { plan });
          }),
        )),
      );
    }
    const finished = await Promise.all(runIds.map((id) => stack.waitForPhase(id, 'terminal', 180_000 + RUNS * 500)));
    expect(finished.map((r) => r.phase)).toEqual(runIds.map(() => 'COMPLETED'));

    const expected = await tracesSummed();
    expect(await rollups()).toEqual(expected);
    // 2 tenants x 2 keys x (sim-1 + 2 models) in one or two hours.
    expect(new Set(expected.map((line) => line.split('|').slice(0, 4).join('|'))).size).toBeGreaterThanOrEqual(2 * 2 * 2);
    const totals = await exactTotals();
    expect(totals.rollups).toBe(totals.traces);
    expect(totals.calls).toBe(String(2 * RUNS));
  });

  it('count each of 1,000 records once, however often (and however concurrently) it is recorded', { timeout: 240_000 }, async () => {
    const env = new MockActivityEnvironment();
    const { runStep } = createSkillActivities(stack.activityDeps);
    const apiKeyIds = new Map(
      (await stack.db.select({ id: apiKeys.id, hash: apiKeys.keyHash }).from(apiKeys).where(inArray(apiKeys.keyHash, keys.flat().map(hashApiKey)))).map((k) => [k.hash, k.id]),
    );
    const before = await exactTotals();
    const DB_RUNS = 100;
    const STEPS = 10;
    const runs = Array.from({ length: DB_RUNS }, (_, r) => {
      const tenant = r % 2;
      const plan = Array.from({ length: STEPS }, (_, s): PlanStep => (s % 3 === 0 ? chatStep(MODELS[(r + s) % 2]!, `db ${r}.${s}`) : { skill: 'sim.llm', input: { prompt: `db step ${r}.${s}` } }));
      return { id: randomUUID(), tenantId: tenants[tenant]!.tenantId, apiKeyId: apiKeyIds.get(hashApiKey(keys[tenant]![(r >> 1) % 2]!))!, plan };
    });
    for (const run of runs) {
      await insertRun(stack.db, {
        id: run.id,
        tenantId: run.tenantId,
        apiKeyId: run.apiKeyId,
        requestHash: 'test',
        plan: run.plan,
        budgetUsd: 100,
        status: 'running',
        phase: 'EXECUTING',
        authorizationDecision: 'ALLOWED',
        policyVersion: 1,
        observabilityMode: 'DEGRADED',
        workflowStartedAt: new Date(),
      });
    }
    // Every record once, a third of them again concurrently (two attempts racing) and again after (a retry).
    const record = (run: (typeof runs)[number], stepIndex: number) =>
      env.run(runStep, { runId: run.id, tenantId: run.tenantId, stepIndex, step: run.plan[stepIndex]!, references: {}, warningAtUsd: null });
    const items = runs.flatMap((run) => run.plan.map((_, s) => ({ run, s })));
    expect(items).toHaveLength(1000);
    for (let i = 0; i < items.length; i += 50) {
      await Promise.all(items.slice(i, i + 50).flatMap(({ run, s }, j) => (j % 3 === 0 ? [record(run, s), record(run, s)] : [record(run, s)])));
    }
    const firsts = (await Promise.all(items.slice(0, 50).map(({ run, s }) => record(run, s)))) as { costUsd: number }[];
    expect(firsts.every((r) => r.costUsd > 0)).toBe(true);

    expect(await rollups()).toEqual(await tracesSummed());
    const after = await exactTotals();
    expect(after.rollups).toBe(after.traces);
    expect(Number(after.calls) - Number(before.calls)).toBe(1000);
    expect(Number(after.records) - Number(before.records)).toBe(1000);
  });

  it('count a tool call once, under its tool, when its resolution is recorded twice', async () => {
    const run = { id: randomUUID(), tenantId: tenants[0]!.tenantId };
    await insertRun(stack.db, { ...run, requestHash: 'test', plan: [], budgetUsd: 1, status: 'running', phase: 'EXECUTING', authorizationDecision: 'ALLOWED', policyVersion: 1, observabilityMode: 'DEGRADED' });
    const call = {
      runId: run.id,
      tenantId: run.tenantId,
      item: { stepIndex: 0, turn: 0, callIndex: 0 },
      tool: 'memory.read_graph',
      argsSha256: 'x',
      resolution: 'ok' as const,
      message: 'the graph',
      costUsd: 0.0125,
      durationMs: 3,
      warningAtUsd: null,
    };
    const first = await stack.db.transaction((tx) => recordToolCallResolution(tx, call));
    const second = await stack.db.transaction((tx) => recordToolCallResolution(tx, call));
    expect(first).not.toBeNull();
    expect(second).toBeNull();
    const rows = await stack.db.execute<{ cost: string; calls: number; model: string; skill: string; key_id: string | null }>(
      sql`select cost_usd::text as cost, calls, model, skill, key_id from cost_rollups where tenant_id = ${run.tenantId} and tool = 'memory.read_graph'`,
    );
    expect(rows).toEqual([{ cost: '0.0125', calls: 1, model: '', skill: 'tool', key_id: null }]);
  });

  it('are counted on governed_cost_usd_total by model and skill only', async () => {
    const text = await stack.workerMetrics.registry.getSingleMetricAsString('governed_cost_usd_total');
    const series = text.split('\n').filter((line) => line.startsWith('governed_cost_usd_total{'));
    expect(series.every((line) => /^governed_cost_usd_total\{model="[^"]*",skill="[^"]*"\} /.test(line))).toBe(true);
    // Zero from the start for every known pair; counted under the billed model.
    expect(series.some((line) => line.startsWith('governed_cost_usd_total{model="other",skill="agent"} 0'))).toBe(true);
    const value = (model: string, skill: string) => Number(series.find((l) => l.startsWith(`governed_cost_usd_total{model="${model}",skill="${skill}"}`))?.split(' ')[1]);
    const [byModel] = await stack.db.execute<{ mini: string; sim: string }>(sql`
      select (select sum(cost_usd) from cost_rollups where tenant_id in ${tenantIds()} and model = 'gpt-4o-mini' and skill = 'llm.chat')::text as mini,
             (select sum(cost_usd) from cost_rollups where tenant_id in ${tenantIds()} and model = 'sim-1' and skill = 'sim.llm')::text as sim`);
    expect(value('gpt-4o-mini', 'llm.chat')).toBeCloseTo(Number(byModel!.mini), 9);
    expect(value('sim-1', 'sim.llm')).toBeCloseTo(Number(byModel!.sim), 9);
  });
});

describe('GET /api/v1/costs', () => {
  it("answers the caller's tenant's spend only, grouped as asked, summing to the rollups", async () => {
    const [a, b] = tenants;
    const all = await stack.request('GET', '/api/v1/costs?groupBy=key,model,skill,tool,day', { apiKey: a!.apiKey });
    expect(all.status).toBe(200);
    const [exact] = await stack.db.execute<{ a: string; b: string }>(sql`
      select (select sum(cost_usd) from cost_rollups where tenant_id = ${a!.tenantId})::text as a,
             (select sum(cost_usd) from cost_rollups where tenant_id = ${b!.tenantId})::text as b`);
    expect(all.body.total.costUsd).toBeCloseTo(Number(exact!.a), 9);
    expect(all.body.rows.reduce((s: number, r: { costUsd: number }) => s + r.costUsd, 0)).toBeCloseTo(Number(exact!.a), 9);
    const aKeys = new Set(all.body.rows.map((r: { keyId: string | null }) => r.keyId));
    expect(new Set(all.body.rows.map((r: { model: string }) => r.model))).toEqual(new Set(['sim-1', ...MODELS, '']));
    expect(all.body.rows.every((r: { period: string }) => /^\d{4}-\d\d-\d\dT00:00:00Z$/.test(r.period))).toBe(true);

    // A viewer of the other tenant sees its own spend, none of the first tenant's keys.
    const viewer = await stack.createKey(b!.tenantId, 'viewer');
    const other = await stack.request('GET', '/api/v1/costs?groupBy=key', { apiKey: viewer });
    expect(other.status).toBe(200);
    expect(other.body.total.costUsd).toBeCloseTo(Number(exact!.b), 9);
    expect(other.body.rows.some((r: { keyId: string }) => aKeys.has(r.keyId))).toBe(false);
    expect(other.body.total.costUsd).not.toBeCloseTo(all.body.total.costUsd, 9);

    // No dimension: one row, the total. A range with nothing in it: zeros.
    const total = await stack.request('GET', '/api/v1/costs', { apiKey: a!.apiKey });
    expect(total.body.rows).toHaveLength(1);
    expect(total.body.rows[0].costUsd).toBeCloseTo(Number(exact!.a), 9);
    const empty = await stack.request('GET', '/api/v1/costs?groupBy=model&from=2020-01-01&to=2020-02-01', { apiKey: a!.apiKey });
    expect(empty.body).toMatchObject({ rows: [], total: { costUsd: 0, calls: 0 } });
  });

  it('refuses a bad query with 400 and the reason', async () => {
    const key = tenants[0]!.apiKey;
    for (const [query, reason] of [
      ['groupBy=model,colour', /groupBy.*expected one of/],
      ['groupBy=hour,day', /hour and day are both periods/],
      ['groupBy=model,model', /twice/],
      ['groupBy=model&groupBy=skill', /give groupBy once/],
      ['from=yesterday', /from: must be an ISO 8601/],
      ['from=2026-02-01&to=2026-01-01', /must be before to/],
      ['from=2020-01-01&to=2026-01-01', /longer than 400 days/],
      ['format=xml', /format/],
      ['tenantId=x', /Unrecognized key/],
    ] as const) {
      const res = await stack.request('GET', `/api/v1/costs?${query}`, { apiKey: key });
      expect(res.status, query).toBe(400);
      expect(res.body.error ?? res.body.detail, query).toMatch(reason);
    }
    expect((await stack.request('GET', '/api/v1/costs')).status).toBe(401);
  });

  it('exports CSV with format=csv or Accept: text/csv: a header, one line per row', async () => {
    const key = tenants[1]!.apiKey;
    const json = await stack.request('GET', '/api/v1/costs?groupBy=model,hour', { apiKey: key });
    for (const [query, headers] of [
      ['groupBy=model,hour&format=csv', {}],
      ['groupBy=model,hour', { accept: 'text/csv' }],
    ] as const) {
      const res = await fetch(`${stack.baseUrl}/api/v1/costs?${query}`, { headers: { authorization: `Bearer ${key}`, ...headers } });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/csv/);
      expect(res.headers.get('content-disposition')).toMatch(/^attachment; filename="?costs-\d{4}-\d\d-\d\d-\d{4}-\d\d-\d\d\.csv"?$/);
      const lines = (await res.text()).split('\r\n');
      expect(lines.pop()).toBe('');
      expect(lines[0]).toBe(costColumns(['model', 'hour']).join(','));
      expect(lines[0]).toBe('period,model,costUsd,tokensIn,tokensOut,calls');
      expect(lines.slice(1)).toHaveLength(json.body.rows.length);
      const sum = lines.slice(1).reduce((s, line) => s + Number(line.split(',')[2]), 0);
      expect(sum).toBeCloseTo(json.body.total.costUsd, 9);
    }
  });

  it('is what `governed costs` prints, as a table or CSV', async () => {
    const env = { GOVERNED_API_URL: stack.baseUrl, GOVERNED_API_KEY: tenants[0]!.apiKey };
    const table = await governed(['costs', '--group-by', 'model,skill'], env);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/MODEL\s+SKILL\s+COST/);
    expect(table.stdout).toMatch(/gpt-4o-mini\s+llm\.chat/);
    expect(table.stdout).toMatch(/TOTAL/);
    const csv = await governed(['costs', '--group-by', 'model', '--csv'], env);
    expect(csv.code, csv.stderr).toBe(0);
    expect(csv.stdout.split('\r\n')[0]).toBe('model,costUsd,tokensIn,tokensOut,calls');
    const bad = await governed(['costs', '--group-by', 'colour'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/unknown: colour/);
  });
});

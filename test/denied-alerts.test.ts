import { and, asc, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_ALERT_SETTINGS } from '../core/alerts';
import { saveAlertSettings } from '../db/alert-settings';
import { alerts } from '../db/schema';
import { freshDatabase } from './helpers/fresh-database';
import { simPlan, startStack, type Stack } from './helpers/stack';
import { waitFor } from './helpers/wait';

/**
 * Issue 17 item 9: denied runs have an alert budget of their own. A burst of submits the policy
 * denies (each a run, an incident and an alert) used to spend the tenant's hourly budget, and the
 * genuine failure after it was suppressed TENANT_RATE_LIMIT.
 */

let database: Awaited<ReturnType<typeof freshDatabase>>;
let stack: Stack;

beforeAll(async () => {
  // A database of the file's own: the stack runs the relay and the reactor.
  database = await freshDatabase('denied_alerts');
  stack = await startStack({
    databaseUrl: database.url,
    events: { ALERT_DENIED_RUNS_PER_HOUR: 2, reactorTiming: { retryBaseMs: 100, blockMs: 200 } },
  });
});
afterAll(async () => {
  await stack?.close();
  await database?.drop();
});

function alertsOf(runId: string) {
  return stack.db.select().from(alerts).where(eq(alerts.runId, runId)).orderBy(asc(alerts.createdAt));
}

/** The run's failure alert (run.failed or its outcome incident, whichever the reactor decided first), once both are decided. */
async function failureAlert(runId: string) {
  const rows = await waitFor(`the alerts of run ${runId}`, async () => {
    const found = await alertsOf(runId);
    return found.length >= 2 ? found : undefined;
  });
  const [first] = rows.filter((a) => a.suppressedReason !== 'DUPLICATE');
  expect(rows.filter((a) => a.suppressedReason === 'DUPLICATE')).toHaveLength(1);
  return first!;
}

describe('alerts about denied runs', () => {
  it('count against a budget of their own, so a burst of them cannot suppress a genuine alert', async () => {
    const tenant = await stack.createTenant({ policy: { budgetPerRunUsd: 5 } });
    await saveAlertSettings(stack.db, tenant.tenantId, { ...DEFAULT_ALERT_SETTINGS, maxAlertsPerHour: 3 }, 'test');

    // Five runs the policy denies (a budget above the policy's): recorded, failed, alerted.
    const denied: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body: { plan: simPlan(1), budgetUsd: 50 } });
      expect(res.body.authorizationDecision).toBe('DENIED');
      denied.push(res.body.runId);
    }
    const deniedAlerts = [];
    for (const runId of denied) {
      await stack.waitForPhase(runId, 'terminal');
      deniedAlerts.push(await failureAlert(runId));
    }
    // ALERT_DENIED_RUNS_PER_HOUR=2 of them are sent; the rest are held back by their own budget.
    expect(deniedAlerts.map((a) => a.status).sort()).toEqual(['sent', 'sent', 'suppressed', 'suppressed', 'suppressed']);
    expect(deniedAlerts.filter((a) => a.status === 'suppressed').map((a) => a.suppressedReason)).toEqual(['TENANT_RATE_LIMIT', 'TENANT_RATE_LIMIT', 'TENANT_RATE_LIMIT']);

    // The tenant's own budget (3 an hour) is untouched: three genuine failures are all sent.
    const genuine: string[] = [];
    for (let i = 0; i < 3; i++) genuine.push(await stack.submitRun(tenant.apiKey, { plan: [{ skill: 'sim.llm', input: { prompt: `broken ${i}`, fail: true } }] }));
    for (const runId of genuine) {
      expect((await stack.waitForPhase(runId, 'terminal')).errorCode).toBe('STEP_FAILED');
      const alert = await failureAlert(runId);
      expect(alert, JSON.stringify(alert)).toMatchObject({ status: 'sent', domain: 'runs' });
    }

    // ...and it is still the tenant's cap: the fourth genuine alert of the hour is the one held back.
    const fourth = await stack.submitRun(tenant.apiKey, { plan: [{ skill: 'sim.llm', input: { prompt: 'broken 3', fail: true } }] });
    await stack.waitForPhase(fourth, 'terminal');
    expect(await failureAlert(fourth)).toMatchObject({ status: 'suppressed', suppressedReason: 'TENANT_RATE_LIMIT' });
  });

  it("a denied run's alert does not start its domain's cooldown for genuine ones", async () => {
    const tenant = await stack.createTenant({ policy: { budgetPerRunUsd: 5 } });
    await saveAlertSettings(stack.db, tenant.tenantId, { ...DEFAULT_ALERT_SETTINGS, domainCooldowns: { runs: 600 } }, 'test');
    const res = await stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body: { plan: simPlan(1), budgetUsd: 50 } });
    await stack.waitForPhase(res.body.runId, 'terminal');
    expect(await failureAlert(res.body.runId)).toMatchObject({ status: 'sent' });

    const broken = await stack.submitRun(tenant.apiKey, { plan: [{ skill: 'sim.llm', input: { prompt: 'broken', fail: true } }] });
    await stack.waitForPhase(broken, 'terminal');
    expect(await failureAlert(broken)).toMatchObject({ status: 'sent' });
    const rows = await stack.db.select().from(alerts).where(and(eq(alerts.tenantId, tenant.tenantId), eq(alerts.status, 'sent')));
    expect(rows).toHaveLength(2);
  });
});

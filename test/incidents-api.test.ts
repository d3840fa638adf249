import { randomUUID } from 'node:crypto';
import { and, eq, inArray } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_ALERT_SETTINGS } from '../core/alerts';
import { incidentMove, resolveIncidentsBySystem } from '../db/incidents';
import { alerts, alertSettings, apiKeys, incidents, outbox } from '../db/schema';
import { hashApiKey } from '../lib/api-keys';
import { simPlan, startStack, type Stack, type TestTenant } from './helpers/stack';

let stack: Stack;
let tenant: TestTenant;
let other: TestTenant;
let memberKey: string;
let viewerKey: string;
/** A FAILED run of `tenant`, with its 'outcome' incident (kind failure, HIGH). */
let failedRunId: string;
/** A COMPLETED run of `tenant`: its "no incident" record, and a home for incidents inserted here. */
let cleanRunId: string;
/** A FAILED run of `other`. */
let otherRunId: string;

const failingPlan = [{ skill: 'sim.llm', input: { prompt: 'x', fail: true } }];

beforeAll(async () => {
  stack = await startStack();
  [tenant, other] = await Promise.all([stack.createTenant(), stack.createTenant()]);
  [memberKey, viewerKey] = await Promise.all([stack.createKey(tenant.tenantId, 'member'), stack.createKey(tenant.tenantId, 'viewer')]);
  [failedRunId, cleanRunId, otherRunId] = await Promise.all([
    stack.submitRun(tenant.apiKey, { plan: failingPlan }),
    stack.submitRun(tenant.apiKey, { plan: simPlan(1) }),
    stack.submitRun(other.apiKey, { plan: failingPlan }),
  ]);
  const finished = await Promise.all([failedRunId, cleanRunId, otherRunId].map((id) => stack.waitForPhase(id, 'terminal')));
  expect(finished.map((r) => r.phase)).toEqual(['FAILED', 'COMPLETED', 'FAILED']);
});
afterAll(() => stack?.close());

/** How the API records a key acting: `api-key:<key id>`. */
async function actorOf(apiKey: string): Promise<string> {
  const [key] = await stack.db.select({ id: apiKeys.id }).from(apiKeys).where(eq(apiKeys.keyHash, hashApiKey(apiKey)));
  return `api-key:${key!.id}`;
}

async function outcomeIncident(runId: string) {
  const [row] = await stack.db
    .select()
    .from(incidents)
    .where(and(eq(incidents.runId, runId), eq(incidents.dedupeKey, 'outcome')));
  return row!;
}

async function incidentRow(id: string) {
  const [row] = await stack.db.select().from(incidents).where(eq(incidents.id, id));
  return row!;
}

/** An incident written straight to the table, on the clean run unless told otherwise. */
async function insertIncident(values: Partial<typeof incidents.$inferInsert> = {}) {
  const [row] = await stack.db
    .insert(incidents)
    .values({
      runId: cleanRunId,
      tenantId: tenant.tenantId,
      dedupeKey: `test:${randomUUID()}`,
      kind: 'escalation',
      severity: 'MEDIUM',
      message: 'inserted by the incidents API test',
      ...values,
    })
    .returning();
  return row!;
}

/** The lifecycle events announced for these incidents, oldest first. */
async function lifecycleEvents(...incidentIds: string[]) {
  const keys = incidentIds.flatMap((id) => [`${id}:acknowledged`, `${id}:resolved`]);
  return stack.db.select().from(outbox).where(inArray(outbox.dedupeKey, keys)).orderBy(outbox.id);
}

/** Every page of a list, following `nextCursor`. */
async function allPages(path: string, field: string, apiKey: string): Promise<any[]> {
  const rows: any[] = [];
  let cursor: string | null = null;
  do {
    const separator = path.includes('?') ? '&' : '?';
    const res = await stack.request('GET', `${path}${cursor ? `${separator}cursor=${cursor}` : ''}`, { apiKey });
    expect(res.status).toBe(200);
    rows.push(...res.body[field]);
    cursor = res.body.nextCursor;
  } while (cursor);
  return rows;
}

const ids = (rows: { id: string }[]) => rows.map((r) => r.id);

describe('the lifecycle rule', () => {
  it('allows open → acknowledged → resolved and open → resolved, repeats an acknowledgement or a resolution, refuses the rest', () => {
    expect(incidentMove('open', 'acknowledge')).toBe('apply');
    expect(incidentMove('acknowledged', 'acknowledge')).toBe('already');
    expect(incidentMove('resolved', 'acknowledge')).toBe('conflict');
    expect(incidentMove('open', 'resolve')).toBe('apply');
    expect(incidentMove('acknowledged', 'resolve')).toBe('apply');
    expect(incidentMove('resolved', 'resolve')).toBe('already');
  });
});

describe('an incident over HTTP', () => {
  it('goes open → acknowledged → resolved with who, when and note, announced once per move', async () => {
    const incident = await outcomeIncident(failedRunId);
    expect(incident).toMatchObject({ kind: 'failure', severity: 'HIGH', status: 'open' });
    const path = `/api/v1/incidents/${incident.id}`;
    const [member, admin] = await Promise.all([actorOf(memberKey), actorOf(tenant.apiKey)]);

    const read = await stack.request('GET', path, { apiKey: viewerKey });
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({ id: incident.id, runId: failedRunId, status: 'open', acknowledgedAt: null, resolvedAt: null });
    expect(read.body).not.toHaveProperty('tenantId');
    expect(read.body).not.toHaveProperty('dedupeKey');

    const acked = await stack.request('POST', `${path}/acknowledge`, { apiKey: memberKey, body: { note: 'looking into it' } });
    expect(acked.status).toBe(200);
    expect(acked.body).toMatchObject({ status: 'acknowledged', acknowledgedBy: member, note: 'looking into it', resolvedAt: null });
    expect(acked.body.acknowledgedAt).toEqual(expect.any(String));

    // A repeated acknowledgement is a retry: 200, and the first one stands.
    const again = await stack.request('POST', `${path}/acknowledge`, { apiKey: tenant.apiKey, body: { note: 'me too' } });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(acked.body);

    const resolved = await stack.request('POST', `${path}/resolve`, { apiKey: tenant.apiKey, body: { note: 'provider fixed' } });
    expect(resolved.status).toBe(200);
    expect(resolved.body).toMatchObject({
      status: 'resolved',
      acknowledgedBy: member,
      acknowledgedAt: acked.body.acknowledgedAt,
      resolvedBy: admin,
      note: 'provider fixed',
    });
    expect(Date.parse(resolved.body.resolvedAt)).toBeGreaterThanOrEqual(Date.parse(acked.body.acknowledgedAt));

    // A repeated resolution is a retry too: 200 with the incident as it is, naming who resolved it first.
    const resolvedAgain = await stack.request('POST', `${path}/resolve`, { apiKey: memberKey, body: { note: 'late' } });
    expect(resolvedAgain.status).toBe(200);
    expect(resolvedAgain.body).toEqual(resolved.body);
    // Acknowledging a resolved incident is still a conflict, told by its code.
    const refused = await stack.request('POST', `${path}/acknowledge`, { apiKey: tenant.apiKey, body: { note: 'late' } });
    expect(refused.status).toBe(409);
    expect(refused.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(refused.body).toMatchObject({ code: 'INCIDENT_RESOLVED', status: 409, error: expect.stringMatching(/already resolved/), incidentStatus: 'resolved' });
    expect(await incidentRow(incident.id)).toMatchObject({ status: 'resolved', resolvedBy: admin, note: 'provider fixed' });

    const events = await lifecycleEvents(incident.id);
    expect(events.map((e) => e.topic)).toEqual(['incident.acknowledged', 'incident.resolved']);
    const common = { incidentId: incident.id, severity: 'HIGH', kind: 'failure', runId: failedRunId, tenantId: tenant.tenantId };
    expect(events[0]!.payload).toEqual({ ...common, by: member, note: 'looking into it' });
    expect(events[1]!.payload).toEqual({ ...common, by: admin, note: 'provider fixed' });
    expect(events.every((e) => e.runId === failedRunId && e.tenantId === tenant.tenantId)).toBe(true);
  });

  it('resolves straight from open, with no body, keeping the stored note', async () => {
    const incident = await insertIncident({ note: 'opened by hand' });
    const res = await stack.request('POST', `/api/v1/incidents/${incident.id}/resolve`, { apiKey: memberKey });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: 'resolved', acknowledgedAt: null, note: 'opened by hand', resolvedBy: await actorOf(memberKey) });
    const events = await lifecycleEvents(incident.id);
    expect(events.map((e) => [e.topic, e.payload.note])).toEqual([['incident.resolved', null]]);
  });

  it('answers 404 for an unknown id', async () => {
    const res = await stack.request('GET', `/api/v1/incidents/${randomUUID()}`, { apiKey: tenant.apiKey });
    expect(res.status).toBe(404);
  });
});

describe('listing incidents', () => {
  it('filters by status, severity and run, newest first, leaving out "no incident" records', async () => {
    const base = Date.now() - 60_000;
    const low = await insertIncident({ severity: 'LOW', createdAt: new Date(base + 1000) });
    const critical = await insertIncident({ severity: 'CRITICAL', status: 'acknowledged', createdAt: new Date(base + 2000) });
    const high = await insertIncident({ severity: 'HIGH', status: 'resolved', createdAt: new Date(base + 3000) });
    const none = await outcomeIncident(cleanRunId);
    expect(none).toMatchObject({ kind: 'none', status: 'resolved' });

    const list = async (query: string) => {
      const res = await stack.request('GET', `/api/v1/incidents?runId=${cleanRunId}&${query}`, { apiKey: viewerKey });
      expect(res.status).toBe(200);
      // Incidents other tests put on the clean run are not this test's business.
      return ids(res.body.incidents).filter((id) => [low.id, critical.id, high.id, none.id].includes(id));
    };
    expect(await list('limit=200')).toEqual([high.id, critical.id, low.id]);
    expect(await list('status=open')).toEqual([low.id]);
    expect(await list('status=open,acknowledged')).toEqual([critical.id, low.id]);
    expect(await list('severity=CRITICAL')).toEqual([critical.id]);
    expect(await list('severity=HIGH,LOW')).toEqual([high.id, low.id]);
    expect(await list('status=resolved&severity=HIGH')).toEqual([high.id]);

    const byRun = await stack.request('GET', `/api/v1/incidents?runId=${failedRunId}`, { apiKey: tenant.apiKey });
    expect(ids(byRun.body.incidents)).toEqual([(await outcomeIncident(failedRunId)).id]);
  });

  it('pages through rows stamped within the same millisecond without skipping or repeating any', async () => {
    const sameMillisecond = await Promise.all([1, 2, 3].map(() => insertIncident()));
    // Postgres keeps microseconds, a cursor milliseconds; a JS Date cannot carry microseconds, so SQL sets them.
    for (const [i, micros] of ['123100', '123500', '123900'].entries()) {
      await stack.database.sql`update incidents set created_at = ${`2001-02-03T04:05:06.${micros}Z`}::timestamptz where id = ${sameMillisecond[i]!.id}`;
    }
    const paged = await allPages('/api/v1/incidents?limit=1', 'incidents', tenant.apiKey);
    const whole = (await stack.request('GET', '/api/v1/incidents?limit=200', { apiKey: tenant.apiKey })).body.incidents;
    expect(ids(paged)).toEqual(ids(whole));
    expect(new Set(ids(paged)).size).toBe(paged.length);
    expect(ids(paged).slice(-3).sort()).toEqual(ids(sameMillisecond).sort());
  });

  it("shows only the caller's tenant's incidents", async () => {
    const mine = await outcomeIncident(failedRunId);
    const theirs = await outcomeIncident(otherRunId);
    const ours = await allPages('/api/v1/incidents?limit=200', 'incidents', tenant.apiKey);
    const others = await allPages('/api/v1/incidents?limit=200', 'incidents', other.apiKey);
    expect(ids(ours)).toContain(mine.id);
    expect(ids(ours)).not.toContain(theirs.id);
    expect(ids(others)).toEqual([theirs.id]);
  });
});

describe('who may do what', () => {
  it("answers 404 for another tenant's incident, exactly like a missing one, and changes nothing", async () => {
    const theirs = await outcomeIncident(otherRunId);
    const before = await incidentRow(theirs.id);
    const missing = randomUUID();
    for (const [method, suffix] of [
      ['GET', ''],
      ['POST', '/acknowledge'],
      ['POST', '/resolve'],
    ] as const) {
      const res = await stack.request(method, `/api/v1/incidents/${theirs.id}${suffix}`, { apiKey: tenant.apiKey, body: method === 'POST' ? { note: 'not mine' } : undefined });
      const absent = await stack.request(method, `/api/v1/incidents/${missing}${suffix}`, { apiKey: tenant.apiKey, body: method === 'POST' ? { note: 'not mine' } : undefined });
      expect(res.status).toBe(404);
      expect(res.body.error.replace(theirs.id, '<id>')).toBe(absent.body.error.replace(missing, '<id>'));
    }
    expect(await incidentRow(theirs.id)).toEqual(before);
    expect(await lifecycleEvents(theirs.id)).toEqual([]);
  });

  it('lets viewers read incidents but not acknowledge or resolve them', async () => {
    const incident = await insertIncident();
    for (const action of ['acknowledge', 'resolve']) {
      const res = await stack.request('POST', `/api/v1/incidents/${incident.id}/${action}`, { apiKey: viewerKey, body: { note: 'x' } });
      expect(res.status).toBe(403);
      expect(res.body.error).toMatch(/viewer/);
    }
    expect((await stack.request('GET', `/api/v1/incidents/${incident.id}`, { apiKey: viewerKey })).status).toBe(200);
    expect(await incidentRow(incident.id)).toEqual(incident);
    expect(await lifecycleEvents(incident.id)).toEqual([]);
  });
});

describe('bad input gets a 400 with a reason and changes nothing', () => {
  let incident: typeof incidents.$inferSelect;
  beforeAll(async () => {
    incident = await insertIncident();
  });
  const post = (action: string, body?: unknown, id?: string) => () =>
    stack.request('POST', `/api/v1/incidents/${id ?? incident.id}/${action}`, { apiKey: tenant.apiKey, body });
  const get = (path: string) => () => stack.request('GET', path, { apiKey: tenant.apiKey });
  const cases: [string, RegExp, () => Promise<{ status: number; body: any }>][] = [
    ['an id that is not a UUID (read)', /incident id must be a UUID/, get('/api/v1/incidents/not-a-uuid')],
    ['an id that is not a UUID (move)', /incident id must be a UUID/, post('acknowledge', {}, '42')],
    ['an unknown status', /status/, get('/api/v1/incidents?status=closed')],
    ['a severity outside the list', /severity/, get('/api/v1/incidents?severity=NONE')],
    ['a repeated severity', /severity once, comma-separated/, get('/api/v1/incidents?severity=HIGH&severity=LOW')],
    ['a run id that is not a UUID', /runId/, get('/api/v1/incidents?runId=abc')],
    ['an unknown query parameter', /colour/, get('/api/v1/incidents?colour=red')],
    ['a bad cursor', /invalid cursor/, get('/api/v1/incidents?cursor=bm9wZQ')],
    ['a limit of zero', /limit/, get('/api/v1/incidents?limit=0')],
    ['an unknown body field', /priority/, post('acknowledge', { note: 'x', priority: 'high' })],
    ['a note that is too long', /note/, post('resolve', { note: 'x'.repeat(2001) })],
    ['a note that is not a string', /note/, post('acknowledge', { note: 42 })],
    ['an empty note', /note/, post('resolve', { note: '' })],
  ];
  it.each(cases)('%s', async (_name, reason, send) => {
    const res = await send();
    expect(res.status).toBe(400);
    expect(res.body.error).toMatch(reason);
    expect(await incidentRow(incident.id)).toEqual(incident);
  });

  it('takes a note of exactly 2000 characters', async () => {
    const res = await post('acknowledge', { note: 'x'.repeat(2000) })();
    expect(res.status).toBe(200);
    expect(res.body.note).toHaveLength(2000);
  });
});

describe('alert settings', () => {
  const settings = { enabled: false, maxAlertsPerHour: 10, dedupWindowSeconds: 300, domainCooldowns: { incidents: 600 } };

  it('answers the defaults, stores a valid document whole, and refuses an invalid one', async () => {
    const own = await stack.createTenant();
    const request = (method: string, body?: unknown) => stack.request(method, '/api/v1/alert-settings', { apiKey: own.apiKey, body });

    expect(await request('GET')).toMatchObject({ status: 200, body: DEFAULT_ALERT_SETTINGS });
    expect(await request('PUT', settings)).toMatchObject({ status: 200, body: settings });
    expect(await request('GET')).toMatchObject({ status: 200, body: settings });
    const [row] = await stack.db.select().from(alertSettings).where(eq(alertSettings.tenantId, own.tenantId));
    expect(row!.updatedBy).toBe(await actorOf(own.apiKey));

    for (const bad of [
      { ...settings, extra: true },
      { ...settings, maxAlertsPerHour: 0 },
      { ...settings, domainCooldowns: { nowhere: 5 } },
      { enabled: true },
      [],
      undefined,
    ]) {
      const res = await request('PUT', bad);
      expect(res.status).toBe(400);
      expect(res.body.error).toMatch(/^invalid alert settings: /);
    }
    expect((await request('GET')).body).toEqual(settings);

    // The whole document is replaced: a cooldown left out is gone, not kept.
    const replaced = { ...settings, domainCooldowns: { runs: 30 } };
    expect(await request('PUT', replaced)).toMatchObject({ status: 200, body: replaced });
    expect((await request('GET')).body).toEqual(replaced);
  });

  it('is for admins only', async () => {
    const before = (await stack.request('GET', '/api/v1/alert-settings', { apiKey: tenant.apiKey })).body;
    for (const apiKey of [memberKey, viewerKey]) {
      expect((await stack.request('GET', '/api/v1/alert-settings', { apiKey })).status).toBe(403);
      expect((await stack.request('PUT', '/api/v1/alert-settings', { apiKey, body: settings })).status).toBe(403);
    }
    expect((await stack.request('GET', '/api/v1/alert-settings', { apiKey: tenant.apiKey })).body).toEqual(before);
  });
});

describe('listing alerts', () => {
  let own: TestTenant;
  let stored: Record<'sent' | 'duplicate' | 'disabled' | 'pending', string>;
  let foreign: string[];

  beforeAll(async () => {
    own = await stack.createTenant();
    const alert = (tenantId: string | null, values: Partial<typeof alerts.$inferInsert>) => ({
      eventId: Math.floor(Math.random() * 2 ** 48),
      rule: `test:${randomUUID()}`,
      tenantId,
      domain: 'incidents',
      severity: 'HIGH',
      title: 'inserted by the incidents API test',
      detail: {},
      status: 'sent' as const,
      ...values,
    });
    const rows = await stack.db
      .insert(alerts)
      .values([
        alert(own.tenantId, { status: 'sent', sinks: ['log'], sentAt: new Date() }),
        alert(own.tenantId, { status: 'suppressed', suppressedReason: 'DUPLICATE' }),
        alert(own.tenantId, { status: 'suppressed', suppressedReason: 'DISABLED' }),
        alert(own.tenantId, { status: 'pending' }),
        alert(other.tenantId, { status: 'suppressed', suppressedReason: 'DUPLICATE' }),
        alert(null, { status: 'sent' }),
      ])
      .returning({ id: alerts.id });
    const [sent, duplicate, disabled, pending, ...rest] = rows.map((r) => r.id);
    stored = { sent: sent!, duplicate: duplicate!, disabled: disabled!, pending: pending! };
    foreign = rest;
    // Three of them within one millisecond, to page across it.
    for (const [id, micros] of [
      [sent, '123100'],
      [duplicate, '123500'],
      [disabled, '123900'],
    ]) {
      await stack.database.sql`update alerts set created_at = ${`2001-02-03T04:05:06.${micros}Z`}::timestamptz where id = ${id!}`;
    }
  });

  const list = async (query: string, apiKey = own.apiKey) => {
    const res = await stack.request('GET', `/api/v1/alerts${query}`, { apiKey });
    return { status: res.status, ids: res.status === 200 ? ids(res.body.alerts) : [], body: res.body };
  };

  it("answers only the tenant's alerts, newest first", async () => {
    const all = await list('');
    expect(all.status).toBe(200);
    expect(all.ids[0]).toBe(stored.pending);
    expect([...all.ids].sort()).toEqual(Object.values(stored).sort());
    expect(all.ids.some((id) => foreign.includes(id))).toBe(false);
    expect(all.body.alerts[0]).not.toHaveProperty('tenantId');
    // Viewers may read alerts too.
    expect((await list('', await stack.createKey(own.tenantId, 'viewer'))).ids).toEqual(all.ids);
  });

  it('filters by status and suppression reason', async () => {
    expect((await list('?status=suppressed')).ids.sort()).toEqual([stored.duplicate, stored.disabled].sort());
    expect((await list('?status=sent')).ids).toEqual([stored.sent]);
    expect((await list('?status=pending')).ids).toEqual([stored.pending]);
    expect((await list('?reason=DUPLICATE')).ids).toEqual([stored.duplicate]);
    expect((await list('?status=suppressed&reason=DISABLED')).ids).toEqual([stored.disabled]);
  });

  it('pages across rows stamped within the same millisecond', async () => {
    const paged = await allPages('/api/v1/alerts?limit=1', 'alerts', own.apiKey);
    expect(ids(paged)).toEqual((await list('')).ids);
  });

  it('refuses bad filters with a reason', async () => {
    for (const [query, reason] of [
      ['?status=delivered', /status/],
      ['?reason=BORED', /reason/],
      ['?status=sent&reason=DUPLICATE', /only suppressed alerts have a reason/],
      ['?tenantId=x', /tenantId/],
    ] as const) {
      const res = await list(query);
      expect(res.status).toBe(400);
      expect(res.body.error).toMatch(reason);
    }
  });
});

describe('resolveIncidentsBySystem', () => {
  it('resolves open and acknowledged incidents as the system, with one event each, and leaves resolved ones', async () => {
    const open = await insertIncident();
    const acknowledged = await insertIncident({ status: 'acknowledged', acknowledgedAt: new Date(), acknowledgedBy: 'api-key:someone' });
    const resolved = await insertIncident({ status: 'resolved', resolvedAt: new Date(), resolvedBy: 'api-key:someone', note: 'done by hand' });

    const done = await stack.db.transaction((tx) => resolveIncidentsBySystem(tx, [open.id, acknowledged.id, resolved.id], 'finding cleared'));
    expect([...done].sort()).toEqual([open.id, acknowledged.id].sort());

    for (const id of [open.id, acknowledged.id]) {
      expect(await incidentRow(id)).toMatchObject({ status: 'resolved', resolvedBy: 'system', note: 'finding cleared', resolvedAt: expect.any(Date) });
    }
    expect(await incidentRow(acknowledged.id)).toMatchObject({ acknowledgedBy: 'api-key:someone' });
    expect(await incidentRow(resolved.id)).toEqual(resolved);

    const events = await lifecycleEvents(open.id, acknowledged.id, resolved.id);
    expect(events.map((e) => [e.topic, e.payload.incidentId]).sort()).toEqual(
      [
        ['incident.resolved', open.id],
        ['incident.resolved', acknowledged.id],
      ].sort(),
    );
    expect(events[0]!.payload).toMatchObject({ by: 'system', note: 'finding cleared', kind: 'escalation', severity: 'MEDIUM', runId: cleanRunId });

    // A second pass finds nothing left to do and announces nothing.
    expect(await stack.db.transaction((tx) => resolveIncidentsBySystem(tx, [open.id, acknowledged.id], 'again'))).toEqual([]);
    expect(await lifecycleEvents(open.id, acknowledged.id, resolved.id)).toHaveLength(2);
    expect(await stack.db.transaction((tx) => resolveIncidentsBySystem(tx, [], 'nothing'))).toEqual([]);
  });

  it("writes nothing when the caller's transaction rolls back", async () => {
    const open = await insertIncident();
    await expect(
      stack.db.transaction(async (tx) => {
        await resolveIncidentsBySystem(tx, [open.id], 'finding cleared');
        throw new Error('the reconciler pass failed');
      }),
    ).rejects.toThrow(/pass failed/);
    expect(await incidentRow(open.id)).toEqual(open);
    expect(await lifecycleEvents(open.id)).toEqual([]);
  });
});

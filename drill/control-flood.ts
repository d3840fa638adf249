import { randomUUID } from 'node:crypto';
import { WorkflowNotFoundError, type Client, type WorkflowHandle } from '@temporalio/client';
import { and, eq, inArray } from 'drizzle-orm';
import { runControlEvents, runs } from '../db/schema';
import { mapLimit } from '../lib/map-limit';
import type { Fault, FaultContext } from './fault';

/**
 * The control flood (issue 17): while the runs are in flight, every key the tenant has floods them
 * with pauses, resumes and stops through the API, past the rate limits, and Temporal itself is
 * sent signals the SDK cannot decode and signals far larger than a control may be. Then every run
 * is brought home: each paused run resumed by the admin until it finishes, each stopped run
 * stopped. The drill holds the product to its promise (no run lost, duplicated or stuck; the
 * stopped runs stopped once) and every answer to the truth:
 *
 * - nothing is 5xx, and nothing is answered but 200/202 (applied or coalesced), 400 (the request
 *   itself is refused: an oversized reason), 409 (the run refuses it now) or 429;
 * - a 429 carries `Retry-After` (whole seconds, the same as its `retryAfterSeconds`) and names its limit;
 * - a 2xx that says it signalled (pause, stop) is a signal with the answer's `requestId` in the
 *   run's history; a resume answered `resumed: true` is an update Temporal accepted under that id;
 * - each undecodable and each oversized signal is recorded by its run as refused.
 */

/** A control through the API and what it was answered. */
interface Answer {
  action: 'pause' | 'resume' | 'stop';
  runId: string;
  key: string;
  status: number;
  body: Record<string, unknown> | null;
  retryAfter: string | null;
  oversized: boolean;
}

const DEFAULT_FLOOD_SECONDS = 8;
/** Between rounds of the flood; each round is a burst from every key. */
const ROUND_MS = 200;
/** Requests per key per round. */
const BURST = 5;
/** A reason far larger than any control may carry (the API takes 500 characters; a signal 16 KiB). */
const OVERSIZED_REASON = 'x'.repeat(100 * 1024);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function control(baseUrl: string, key: string, action: Answer['action'], runId: string, reason?: string): Promise<Answer> {
  const response = await fetch(`${baseUrl}/api/v1/runs/${runId}/${action}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(reason === undefined ? {} : { reason }),
  });
  const text = await response.text();
  let body: Record<string, unknown> | null = null;
  try {
    body = text ? (JSON.parse(text) as Record<string, unknown>) : null;
  } catch {
    body = { unparsed: text.slice(0, 200) };
  }
  return { action, runId, key, status: response.status, body, retryAfter: response.headers.get('retry-after'), oversized: reason === OVERSIZED_REASON };
}

/** A signal whose payload says an encoding the SDK has no converter for, or JSON that is not JSON. */
async function undecodableSignal(client: Client, runId: string, name: string, flavour: 'binary' | 'broken-json'): Promise<void> {
  const payload =
    flavour === 'binary'
      ? { metadata: { encoding: new TextEncoder().encode('binary/x') }, data: new TextEncoder().encode('\u0000\u0001 not a control') }
      : { metadata: { encoding: new TextEncoder().encode('json/plain') }, data: new TextEncoder().encode('{"actor": "drill", "reason": ') };
  await client.workflowService.signalWorkflowExecution({
    namespace: client.options.namespace,
    workflowExecution: { workflowId: runId },
    signalName: name,
    input: { payloads: [payload] },
    identity: 'drill control-flood',
    requestId: randomUUID(),
  });
}

/** Per run: the request ids of the signals its executions received, and the ids of the updates they accepted. */
async function deliveredIds(client: Client, runId: string): Promise<{ signals: Set<string>; updates: Set<string> }> {
  const signals = new Set<string>();
  const updates = new Set<string>();
  const decoder = new TextDecoder();
  for (let execution: string | undefined = (await client.workflow.getHandle(runId).describe()).runId; execution; ) {
    const history: Awaited<ReturnType<WorkflowHandle['fetchHistory']>> = await client.workflow.getHandle(runId, execution).fetchHistory();
    const events = history.events ?? [];
    for (const event of events) {
      const signal = event.workflowExecutionSignaledEventAttributes?.input?.payloads?.[0];
      if (signal?.data && decoder.decode(signal.metadata?.encoding ?? new Uint8Array()) === 'json/plain') {
        try {
          const requestId = (JSON.parse(decoder.decode(signal.data)) as { requestId?: unknown }).requestId;
          if (typeof requestId === 'string') signals.add(requestId);
        } catch {
          // the drill's own broken JSON
        }
      }
      const updateId = event.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.meta?.updateId;
      if (updateId) updates.add(updateId);
    }
    execution = events[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined;
  }
  return { signals, updates };
}

/** What is wrong with one answer on its face (its status, its headers), or null. */
function answerProblem(a: Answer): string | null {
  const what = `${a.action} of ${a.runId} (${a.key}) answered ${a.status}`;
  if (a.status >= 500) return `${what}: ${JSON.stringify(a.body)}`;
  if (a.status === 429) {
    const seconds = Number(a.retryAfter);
    if (!Number.isInteger(seconds) || seconds < 1) return `${what} without a Retry-After of whole seconds (${a.retryAfter})`;
    if (a.body?.retryAfterSeconds !== seconds) return `${what}: Retry-After ${seconds} but retryAfterSeconds ${String(a.body?.retryAfterSeconds)}`;
    // The key's allowance of requests per minute may be spent first by a long flood: a limit too.
    if (!['per_key', 'per_run', 'requests_per_key'].includes(String(a.body?.limit))) return `${what} naming no limit of the API's: ${JSON.stringify(a.body)}`;
    return null;
  }
  if (a.status === 400) return a.oversized ? null : `${what}: ${JSON.stringify(a.body)}`;
  if (a.oversized) return `${what} to a 100 KB reason, which must be refused (400)`;
  if (a.status === 409) return typeof a.body?.error === 'string' ? null : `${what} without saying why`;
  if (a.status === 200 || a.status === 202) {
    if (a.action === 'resume') return a.body?.resumed === true || a.body?.resumed === 'unknown' ? null : `${what}: ${JSON.stringify(a.body)}`;
    const outcomes = a.action === 'pause' ? ['signalled', 'coalesced', 'already_paused'] : ['signalled', 'already_stopping'];
    if (!outcomes.includes(String(a.body?.outcome))) return `${what} with outcome ${String(a.body?.outcome)}`;
    if ((a.status === 202) !== (a.body?.outcome === 'signalled')) return `${what} with outcome ${String(a.body?.outcome)}`;
    return typeof a.body?.requestId === 'string' ? null : `${what} without a requestId`;
  }
  return `${what}: ${JSON.stringify(a.body)}`;
}

function tally(answers: Answer[]): string {
  const by = new Map<string, number>();
  for (const a of answers) {
    const label = `${a.status}${a.body && typeof a.body.outcome === 'string' ? ` ${a.body.outcome}` : ''}${a.status === 429 ? ` ${String(a.body?.limit)}` : ''}`;
    by.set(label, (by.get(label) ?? 0) + 1);
  }
  return [...by.entries()]
    .sort((x, y) => y[1] - x[1])
    .map(([label, n]) => `${n}× ${label}`)
    .join(', ');
}

async function inject(context: FaultContext): Promise<void> {
  const { stack, options, note, fail } = context;
  const ids = context.runIds;
  const keys = {
    member: await stack.createKey('member'),
    admin: stack.tenant.apiKey,
    'second admin': await stack.createKey('admin'),
  };
  // A quarter of the runs (at least one) are stopped by the flood; the rest must complete through it.
  const stopTargets = ids.slice(0, Math.max(1, Math.floor(ids.length / 4)));
  const finishing = ids.filter((id) => !stopTargets.includes(id));
  context.expectStopped(stopTargets);
  const answers: Answer[] = [];
  const send = async (key: keyof typeof keys, action: Answer['action'], runId: string, reason?: string) => {
    answers.push(await control(stack.baseUrl, keys[key], action, runId, reason));
  };

  // Raw signals to every run still in flight: two that cannot be decoded and one of 100 KB, for each control.
  let raw = 0;
  const reachedByRaw = new Set<string>();
  await mapLimit(await context.inFlight(), 4, async (runId) => {
    try {
      for (const name of ['pause', 'resume', 'stop']) {
        await undecodableSignal(stack.client, runId, name, 'binary');
        await undecodableSignal(stack.client, runId, name, 'broken-json');
        await stack.client.workflow.getHandle(runId).signal(name, { actor: 'drill', authority: 'TENANT_ADMIN', reason: OVERSIZED_REASON, requestId: `drill-oversized-${name}-${runId}` });
        raw += 3;
        reachedByRaw.add(runId);
      }
    } catch (err) {
      // Finished meanwhile: nothing to refuse it any more.
      if (!(err instanceof WorkflowNotFoundError) && !/not found|already completed/i.test(String(err))) throw err;
    }
  });
  note(`sent ${raw} raw signals to ${reachedByRaw.size} runs through Temporal: ${(raw * 2) / 3} undecodable (encoding binary/x; broken JSON), ${raw / 3} carrying a 100 KB reason`);

  // The stops, while every stop target has steps ahead of it, from each key at once.
  await Promise.all(stopTargets.flatMap((runId) => (['member', 'admin', 'second admin'] as const).map((key) => send(key, 'stop', runId, 'drill: stop'))));

  // The flood: every key, in bursts, pauses and resumes random runs (and stops the stop targets), for floodSeconds.
  const floodSeconds = options.floodSeconds ?? DEFAULT_FLOOD_SECONDS;
  const floodUntil = Date.now() + floodSeconds * 1000;
  const actions = ['pause', 'resume', 'pause', 'resume', 'stop'] as const;
  let rounds = 0;
  while (Date.now() < floodUntil) {
    rounds += 1;
    await Promise.all(
      (Object.keys(keys) as (keyof typeof keys)[]).flatMap((key) =>
        Array.from({ length: BURST }, (_, i) => {
          const action = actions[(rounds + i) % actions.length]!;
          const pool = action === 'stop' ? stopTargets : ids;
          const runId = pool[Math.floor(Math.random() * pool.length)]!;
          // Now and then a reason of 100 KB: refused at the door.
          return send(key, action, runId, (rounds + i) % 17 === 0 ? OVERSIZED_REASON : undefined);
        }),
      ),
    );
    await sleep(ROUND_MS);
  }
  note(`flooded ${answers.length} controls through the API (${Object.keys(keys).length} keys, ${rounds} rounds): ${tally(answers)}`);

  // Bring every run home: resume the paused ones as an admin would (after any Retry-After), stop the stop targets.
  const settleAnswers: Answer[] = [];
  const retryAt = new Map<string, number>();
  for (;;) {
    const rows = await stack.database.db
      .select({ id: runs.id, phase: runs.phase, pauseReason: runs.pauseReason })
      .from(runs)
      .where(inArray(runs.id, ids));
    const open = rows.filter((r) => r.phase !== 'COMPLETED' && r.phase !== 'FAILED');
    if (open.length === 0 || Date.now() > context.deadline) break;
    await mapLimit(open, 4, async (run) => {
      if ((retryAt.get(run.id) ?? 0) > Date.now()) return;
      const stop = stopTargets.includes(run.id);
      if (!stop && run.pauseReason === null) return;
      const answer = await control(stack.baseUrl, keys.admin, stop ? 'stop' : 'resume', run.id, 'drill: bring it home');
      settleAnswers.push(answer);
      if (answer.status === 429) retryAt.set(run.id, Date.now() + Number(answer.retryAfter ?? 1) * 1000);
      else if (stop && answer.status < 300) retryAt.set(run.id, Date.now() + 5000);
    });
    await sleep(500);
  }
  note(`brought every run home: ${settleAnswers.length} more controls from the admin (${tally(settleAnswers) || 'none needed'})`);

  // Every answer, held to the truth.
  const all = [...answers, ...settleAnswers];
  const problems = all.map(answerProblem).filter((p): p is string => p !== null);
  const delivered = new Map(await mapLimit(ids, 4, async (runId) => [runId, await deliveredIds(stack.client, runId)] as const));
  for (const a of all) {
    if (a.status >= 300 || a.status < 200) continue;
    const requestId = String(a.body?.requestId);
    const seen = delivered.get(a.runId)!;
    if (a.action !== 'resume' && a.body?.outcome === 'signalled' && !seen.signals.has(requestId)) {
      problems.push(`${a.action} of ${a.runId} answered ${a.status} signalled, but no signal ${requestId} reached the run`);
    }
    if (a.action === 'resume' && a.body?.resumed === true && !seen.updates.has(requestId)) {
      problems.push(`resume of ${a.runId} answered ${a.status} resumed, but Temporal accepted no update ${requestId}`);
    }
  }
  const refused = await stack.database.db
    .select({ runId: runControlEvents.runId, detail: runControlEvents.detail })
    .from(runControlEvents)
    .where(and(inArray(runControlEvents.runId, ids), eq(runControlEvents.accepted, false)));
  for (const runId of reachedByRaw) {
    const details = refused.filter((r) => r.runId === runId).map((r) => r.detail ?? '');
    if (!details.some((d) => /cannot be decoded/.test(d))) problems.push(`run ${runId} recorded no undecodable signal as refused`);
    if (!details.some((d) => /over the \d+ a control may carry/.test(d))) problems.push(`run ${runId} recorded no oversized signal as refused`);
  }
  const unknown = all.filter((a) => a.body?.resumed === 'unknown').length;
  note(
    `checked ${all.length} answers: ${all.filter((a) => a.status >= 500).length} 5xx, ${all.filter((a) => a.status === 429).length} 429 with Retry-After, ` +
      `${all.filter((a) => a.status < 300 && (a.body?.outcome === 'signalled' || a.body?.resumed === true)).length} 2xx signals and updates found in the runs' histories` +
      `${unknown ? `, ${unknown} resumes answered "unknown"` : ''}; ${problems.length} untruthful`,
  );
  for (const problem of problems.slice(0, 20)) fail(`untruthful answer: ${problem}`);
  if (problems.length > 20) fail(`… and ${problems.length - 20} more untruthful answers`);
  if (finishing.length === 0) fail('no run was left to complete through the flood: submit at least two runs');
}

export const controlFlood: Fault = {
  needs: {},
  defaultTimeoutSeconds: 5 * 60,
  describe: (o) =>
    `flood pauses, resumes and stops through the API from member and admin keys past the rate limits for ${o.floodSeconds ?? DEFAULT_FLOOD_SECONDS}s, and send undecodable and 100 KB signals to every run; stop a quarter of the runs`,
  inject,
};

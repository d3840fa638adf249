import { Router } from 'express';
import type { Client } from '@temporalio/client';
import { z } from 'zod';
import { applyChanges, diffText, policyDiff } from '../core/lessons';
import { describeZodError } from '../core/plan';
import type { PolicyRules } from '../core/policy';
import type { Db } from '../db/client';
import { decideProposal, lessonPatterns, listLessons, listProposals, proposalOf, type StoredLesson, type StoredProposal } from '../db/lessons';
import { currentPolicy, savePolicy } from '../db/tenancy';
import { commitWithPush, describePush } from '../dispatch/control-pusher';
import { actorOf, callerOf, requireRole } from './auth';
import { HttpError } from './errors';
import { olderThanCursor, pageOf, parseId, parseQuery } from './paging';
import { lessons } from '../db/schema';
import { policyChangePush } from './policies';

export const lessonsQuery = z
  .object({
    code: z.string().regex(/^[A-Z_]{1,64}$/, 'a failure or near-miss code, e.g. TOOL_DENIED').optional(),
    pattern: z.string().min(1).max(300).optional(),
    runId: z.uuid().optional(),
    limit: z.coerce.number().int().min(1).max(200).default(50),
    cursor: z.string().max(200).optional(),
  })
  .strict();

export const patternsQuery = z
  .object({
    minCount: z.coerce.number().int().min(1).max(1_000_000).default(1),
    limit: z.coerce.number().int().min(1).max(200).default(50),
  })
  .strict();

export const proposalsQuery = z
  .object({
    status: z.enum(['open', 'accepted', 'dismissed']).optional(),
    limit: z.coerce.number().int().min(1).max(200).default(50),
  })
  .strict();

export const acceptBody = z.object({ note: z.string().max(500).optional() }).strict();
export const dismissBody = z.object({}).strict();

function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body ?? {});
  if (!parsed.success) throw new HttpError(400, `invalid request: ${describeZodError(parsed.error)}`);
  return parsed.data;
}

function presentLesson({ tenantId: _tenant, ...lesson }: StoredLesson) {
  return lesson;
}

/** A proposal with what accepting it would do to the policy as it is now (a diff, `-` now, `+` after). */
function presentProposal({ tenantId: _tenant, ...proposal }: StoredProposal, current: { version: number; rules: PolicyRules }) {
  const after = proposal.status === 'open' ? applyChanges(current.rules, proposal.changes) : null;
  const diff = after ? policyDiff(current.rules, after) : [];
  return { ...proposal, currentVersion: current.version, diff, diffText: diffText(diff), applicable: proposal.status === 'open' && after !== null };
}

export interface LessonRoutesDeps {
  db: Db;
  temporal: Client;
  temporalCallTimeoutMs: number;
  pushConcurrency?: number;
}

/**
 * The caller's tenant's lessons and their patterns, read by any role; the policy changes they
 * propose, read (they quote the policy) and accepted (the next policy version, pushed to live runs like any policy
 * change) or dismissed by an admin only. Nothing but an admin's accept changes a policy.
 */
export function lessonRoutes(deps: LessonRoutesDeps): Router {
  const router = Router();
  const pusher = { db: deps.db, temporal: deps.temporal, pushTimeoutMs: deps.temporalCallTimeoutMs, concurrency: deps.pushConcurrency };

  router.get('/lessons', async (req, res) => {
    const query = parseQuery(lessonsQuery, req.query);
    const rows = await listLessons(deps.db, callerOf(res).tenantId, {
      limit: query.limit,
      code: query.code,
      patternKey: query.pattern,
      runId: query.runId,
      olderThan: query.cursor ? olderThanCursor(lessons.createdAt, lessons.id, query.cursor) : undefined,
    });
    const { page, nextCursor } = pageOf(rows, query.limit, (row) => row.id);
    res.json({ lessons: page.map(presentLesson), nextCursor });
  });

  router.get('/lessons/patterns', async (req, res) => {
    const query = parseQuery(patternsQuery, req.query);
    const patterns = await lessonPatterns(deps.db, callerOf(res).tenantId, query);
    res.json({ patterns: patterns.map((p) => ({ ...p, firstSeen: p.firstSeen.toISOString(), lastSeen: p.lastSeen.toISOString() })) });
  });

  // A proposal shows the policy document's rules, which only admins read (`GET /policies`).
  router.get('/lessons/proposals', requireRole('admin'), async (req, res) => {
    const query = parseQuery(proposalsQuery, req.query);
    const tenantId = callerOf(res).tenantId;
    const [rows, current] = await Promise.all([listProposals(deps.db, tenantId, query), currentPolicy(deps.db, tenantId)]);
    res.json({ proposals: rows.map((row) => presentProposal(row, current)) });
  });

  router.post('/lessons/proposals/:id/accept', requireRole('admin'), async (req, res) => {
    const id = parseId(req.params.id, 'proposal id');
    const body = parseBody(acceptBody, req.body);
    const caller = callerOf(res);
    const actor = actorOf(caller);
    const { result, push } = await commitWithPush(
      pusher,
      caller.tenantId,
      async (tx) => {
        const proposal = await proposalOf(tx, caller.tenantId, id, true);
        if (!proposal) throw new HttpError('PROPOSAL_NOT_FOUND', `proposal ${id} not found`);
        if (proposal.status !== 'open') throw new HttpError('PROPOSAL_DECIDED', `proposal ${id} is already ${proposal.status}`, { proposalStatus: proposal.status });
        // Made against the policy as it is now, which may have changed since the proposal.
        const current = await currentPolicy(tx, caller.tenantId);
        const rules = applyChanges(current.rules, proposal.changes);
        if (!rules) throw new HttpError('PROPOSAL_ALREADY_APPLIED', `policy version ${current.version} already says what proposal ${id} proposes; dismiss it`);
        const saved = await savePolicy(tx, caller.tenantId, rules, actor);
        const decided = await decideProposal(tx, id, { status: 'accepted', by: actor, acceptedVersion: saved.version });
        return { saved, decided, diff: policyDiff(current.rules, rules) };
      },
      ({ saved }) => policyChangePush(saved.version, actor, `proposal ${id} accepted${body.note ? `: ${body.note}` : ''}`),
    );
    const { tenantId: _tenant, ...proposal } = result.decided;
    res.json({ proposal, policy: result.saved, diff: result.diff, ...describePush(push) });
  });

  router.post('/lessons/proposals/:id/dismiss', requireRole('admin'), async (req, res) => {
    const id = parseId(req.params.id, 'proposal id');
    parseBody(dismissBody, req.body);
    const caller = callerOf(res);
    const decided = await deps.db.transaction(async (tx) => {
      const proposal = await proposalOf(tx, caller.tenantId, id, true);
      if (!proposal) throw new HttpError('PROPOSAL_NOT_FOUND', `proposal ${id} not found`);
      if (proposal.status !== 'open') throw new HttpError('PROPOSAL_DECIDED', `proposal ${id} is already ${proposal.status}`, { proposalStatus: proposal.status });
      return decideProposal(tx, id, { status: 'dismissed', by: actorOf(caller) });
    });
    const { tenantId: _tenant, ...proposal } = decided;
    res.json({ proposal });
  });

  return router;
}

import type { Client } from '@temporalio/client';
import { applyChanges, diffText, policyDiff } from '../core/lessons';
import type { PolicyRules } from '../core/policy';
import type { Db } from '../db/client';
import { decideProposal, lessonPatterns, listLessons, listProposals, proposalOf, type StoredLesson, type StoredProposal } from '../db/lessons';
import { currentPolicy, savePolicy } from '../db/tenancy';
import { commitWithPush, describePush } from '../dispatch/control-pusher';
import { lessons } from '../db/schema';
import { actorOf } from './auth';
import { HttpError } from './errors';
import { olderThanCursor, pageOf } from './paging';
import { policyChangePush } from './policies';
import type { RouteHandlers } from './router';

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
export function lessonHandlers(deps: LessonRoutesDeps) {
  const pusher = { db: deps.db, temporal: deps.temporal, pushTimeoutMs: deps.temporalCallTimeoutMs, concurrency: deps.pushConcurrency };

  return {
    listLessons: async ({ caller, query }, res) => {
      const rows = await listLessons(deps.db, caller.tenantId, {
        limit: query.limit,
        code: query.code,
        patternKey: query.pattern,
        runId: query.runId,
        olderThan: query.cursor ? olderThanCursor(lessons.createdAt, lessons.id, query.cursor) : undefined,
      });
      const { page, nextCursor } = pageOf(rows, query.limit, (row) => row.id);
      res.json({ lessons: page.map(presentLesson), nextCursor });
    },

    lessonPatterns: async ({ caller, query }, res) => {
      const patterns = await lessonPatterns(deps.db, caller.tenantId, query);
      res.json({ patterns: patterns.map((p) => ({ ...p, firstSeen: p.firstSeen.toISOString(), lastSeen: p.lastSeen.toISOString() })) });
    },

    // A proposal shows the policy document's rules, which only admins read (`GET /policies`).
    listProposals: async ({ caller: { tenantId }, query }, res) => {
      const [rows, current] = await Promise.all([listProposals(deps.db, tenantId, query), currentPolicy(deps.db, tenantId)]);
      res.json({ proposals: rows.map((row) => presentProposal(row, current)) });
    },

    acceptProposal: async ({ caller, params: { id }, body }, res) => {
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
    },

    dismissProposal: async ({ caller, params: { id } }, res) => {
      const decided = await deps.db.transaction(async (tx) => {
        const proposal = await proposalOf(tx, caller.tenantId, id, true);
        if (!proposal) throw new HttpError('PROPOSAL_NOT_FOUND', `proposal ${id} not found`);
        if (proposal.status !== 'open') throw new HttpError('PROPOSAL_DECIDED', `proposal ${id} is already ${proposal.status}`, { proposalStatus: proposal.status });
        return decideProposal(tx, id, { status: 'dismissed', by: actorOf(caller) });
      });
      const { tenantId: _tenant, ...proposal } = decided;
      res.json({ proposal });
    },
  } satisfies Partial<RouteHandlers>;
}

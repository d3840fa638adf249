import type { RequestHandler } from 'express';
import type { Client } from '@temporalio/client';
import type Redis from 'ioredis';
import type { Db } from '../db/client';
import { lastAuditPass } from '../db/audit';
import { reactorHealth, type ReactorHealth } from '../events/reactor';

/**
 * How long one check may take. The checks run side by side, so /healthz answers in about this
 * whatever state the dependencies are in: a load balancer or orchestrator probing it typically
 * gives up after a second, and a probe that times out says less than one that says what is down.
 */
export const HEALTH_CHECK_TIMEOUT_MS = 800;

class CheckTimedOut extends Error {
  constructor() {
    super('timed out');
  }
}

/** `check`, or a CheckTimedOut rejection once `HEALTH_CHECK_TIMEOUT_MS` has passed. */
export function withinCheckTimeout<T>(check: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CheckTimedOut()), HEALTH_CHECK_TIMEOUT_MS);
  });
  return Promise.race([check, timeout]).finally(() => clearTimeout(timer));
}

/** Seconds since the last reconciliation pass, or null before the first. */
export async function auditPassAge(db: Db): Promise<number | null> {
  const last = await lastAuditPass(db);
  return last ? Math.max(0, (Date.now() - last.finishedAt.getTime()) / 1000) : null;
}

export interface HealthDeps {
  db: Db;
  redis: Redis;
  temporal: Client;
  /** The reconciler's interval: degraded when no pass finished in three. */
  auditIntervalSeconds: number;
  reactors?: { stream: string; heartbeatIntervalMs: number; missThreshold: number };
}

function describeDown(reason: unknown): string {
  return `down: ${reason instanceof Error ? reason.message : String(reason)}`;
}

/** GET /healthz: each dependency, the audit loop and the reactors; 503 when anything is wrong. */
export function healthCheck(deps: HealthDeps): RequestHandler {
  const startedAt = Date.now();
  return async (_req, res) => {
    const checks = await Promise.allSettled(
      [
        deps.db.execute('select 1'),
        deps.redis.ping(),
        // A deadline ends the gRPC call itself, not only the wait for it; a little after the
        // timeout, so the check reports "timed out" like the others.
        deps.temporal.connection.withDeadline(Date.now() + HEALTH_CHECK_TIMEOUT_MS + 200, () => deps.temporal.connection.workflowService.getSystemInfo({})),
        auditPassAge(deps.db),
        deps.reactors ? reactorHealth(deps.redis, deps.reactors.stream, deps.reactors.heartbeatIntervalMs, deps.reactors.missThreshold) : Promise.resolve([]),
      ].map((check: Promise<unknown>) => withinCheckTimeout(check)),
    );
    const [postgres, redis, temporal] = checks.slice(0, 3).map((c) => (c.status === 'fulfilled' ? 'ok' : describeDown(c.reason)));
    const [ageCheck, beatsCheck] = [checks[3]!, checks[4]!];
    const age = ageCheck.status === 'fulfilled' ? (ageCheck.value as number | null) : undefined;
    const allowed = 3 * deps.auditIntervalSeconds;
    const audit =
      age === undefined
        ? 'unknown: the audit store could not be read'
        : age === null
          ? (Date.now() - startedAt) / 1000 <= allowed
            ? 'waiting for the first reconciliation pass'
            : `late: no reconciliation pass has finished (expected every ${deps.auditIntervalSeconds}s)`
          : age <= allowed
            ? 'ok'
            : `late: last reconciliation pass finished ${Math.round(age)}s ago (expected every ${deps.auditIntervalSeconds}s)`;
    const beats = beatsCheck.status === 'fulfilled' ? (beatsCheck.value as ReactorHealth[]) : [];
    const reactors = Object.fromEntries(
      beats.map((r) => [r.consumer, r.healthy ? `ok (beat ${r.lastBeatAgeSeconds}s ago)` : `unhealthy: last beat ${r.lastBeatAgeSeconds}s ago`]),
    );
    const healthy = checks.every((c) => c.status === 'fulfilled') && !audit.startsWith('late') && beats.every((r) => r.healthy);
    res.status(healthy ? 200 : 503).json({
      status: healthy ? 'ok' : 'degraded',
      postgres,
      redis,
      temporal,
      audit,
      auditLastPassAgeSeconds: age === null || age === undefined ? null : Math.round(age),
      reactors,
    });
  };
}

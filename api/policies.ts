import { Router } from 'express';
import type { Client } from '@temporalio/client';
import { describeZodError } from '../core/plan';
import { policyRules } from '../core/policy';
import type { Db } from '../db/client';
import { currentPolicy, savePolicy, setTenantStatus } from '../db/tenancy';
import { actorOf, callerOf, requireRole } from './auth';
import { HttpError } from './errors';
import { pushPolicyChange } from './policy-push';

/** The caller's tenant's policy (admin only): every change is a new version, pushed to live runs. */
export function policyRoutes(deps: { db: Db; temporal: Client }): Router {
  const router = Router();
  router.get('/policies', requireRole('admin'), async (_req, res) => {
    res.json(await currentPolicy(deps.db, callerOf(res).tenantId));
  });

  router.put('/policies', requireRole('admin'), async (req, res) => {
    const caller = callerOf(res);
    const parsed = policyRules.safeParse(req.body);
    if (!parsed.success) throw new HttpError(400, `invalid policy: ${describeZodError(parsed.error)}`);
    const saved = await savePolicy(deps.db, caller.tenantId, parsed.data, actorOf(caller));
    const signalled = await pushPolicyChange(deps.db, deps.temporal, caller.tenantId, {
      actor: actorOf(caller),
      reason: `policy version ${saved.version}`,
    });
    res.json({ ...saved, signalledRuns: signalled });
  });

  for (const [action, status] of [
    ['suspend', 'suspended'],
    ['activate', 'active'],
  ] as const) {
    router.post(`/tenant/${action}`, requireRole('admin'), async (_req, res) => {
      const caller = callerOf(res);
      await setTenantStatus(deps.db, caller.tenantId, status);
      const signalled = await pushPolicyChange(deps.db, deps.temporal, caller.tenantId, {
        actor: actorOf(caller),
        reason: `tenant ${status}`,
      });
      res.json({ tenantId: caller.tenantId, status, signalledRuns: signalled });
    });
  }
  return router;
}

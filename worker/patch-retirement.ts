import { loadConfig } from '../lib/config';
import { connectClient, startupFailure } from '../lib/temporal';
import { PATCH_RELEASED, mayRetire, type RunPatch } from '../workflows/patches';

/**
 * `npm run patches:retirable`: for each patch of the run workflow, whether its old branch may be
 * removed now (workflows/patches.ts, PATCH_RELEASED): no run started before the patch's release
 * is open in the namespace, and its retention has passed since the last such run closed.
 */
async function main(): Promise<void> {
  const config = loadConfig();
  const client = await connectClient(config);
  const { config: namespaceConfig } = await client.workflowService.describeNamespace({ namespace: config.TEMPORAL_NAMESPACE });
  const retentionDays = Number(namespaceConfig?.workflowExecutionRetentionTtl?.seconds ?? 0) / 86_400;
  const now = new Date();
  const byRelease = new Map<string, RunPatch[]>();
  for (const [patch, released] of Object.entries(PATCH_RELEASED) as [RunPatch, string][]) byRelease.set(released, [...(byRelease.get(released) ?? []), patch]);
  for (const [released, patches] of [...byRelease].sort()) {
    const before = `WorkflowType = "runWorkflow" AND StartTime < "${new Date(released).toISOString()}"`;
    const { count: open } = await client.workflow.count(`${before} AND ExecutionStatus = "Running"`);
    let lastClosed: Date | null = null;
    for await (const run of client.workflow.list({ query: `${before} AND ExecutionStatus != "Running"`, pageSize: 100 })) {
      if (run.closeTime && (!lastClosed || run.closeTime > lastClosed)) lastClosed = run.closeTime;
    }
    const verdict = mayRetire(released, { openRunsStartedBefore: open, lastSuchRunClosedAt: lastClosed, retentionDays, now }) ? 'may retire' : 'keep';
    console.log(`${released}  ${verdict.padEnd(10)}  open runs started before: ${open}, last of them closed: ${lastClosed?.toISOString() ?? 'none'}, retention ${retentionDays} days  (${patches.join(', ')})`);
  }
  await client.connection.close();
}

main().catch((err: unknown) => {
  console.error(`patches:retirable failed: ${startupFailure(err)}`);
  process.exit(1);
});

import { expect, inject, it } from 'vitest';
import { runDrill } from '../drill/run';

/**
 * The worker-kill drill, short: five runs of ten quick steps, the worker SIGKILLed twice mid-run
 * and restarted. Each kill is aimed between skill steps: until skill activities heartbeat, a skill
 * step running on a killed worker waits out its 10-minute start-to-close, which `npm run drill --
 * worker-kill` shows and CI cannot wait for. What the kills do take down (domain writes, workflow
 * tasks) must still leave every run completed once.
 */
it('loses, duplicates and strands nothing when the worker is SIGKILLed mid-run', { timeout: 90_000 }, async () => {
  const result = await runDrill('worker-kill', {
    runs: 5,
    steps: 10,
    stepMs: 0,
    kills: 2,
    outageSeconds: 0,
    spareSkillSteps: true,
    timeoutSeconds: 55,
    workflowBundlePath: inject('workflowBundlePath'),
    postgresUrl: inject('databaseUrl'),
    redisUrl: inject('redisUrl'),
  });
  expect(result.counts, result.report).toEqual({ completed: 5, lost: 0, duplicated: 0, stuck: 0 });
  expect(result.events.problems, result.report).toEqual([]);
  expect(result.timeline.filter((e) => e.what.startsWith('SIGKILL worker')), result.report).toHaveLength(2);
  expect(result.passed, result.report).toBe(true);
  console.info(result.report);
});

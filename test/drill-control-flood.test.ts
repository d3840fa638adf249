import { expect, inject, it } from 'vitest';
import { runDrill } from '../drill/run';

/**
 * The control-flood drill, short: six runs in flight, flooded for four seconds with pauses, resumes
 * and stops from three keys past the rate limits, plus undecodable and 100 KB signals sent to
 * Temporal directly. Every answer must be truthful (no 5xx; each 429 with its Retry-After; each 2xx
 * signal or update found in the run's history; how many are 429s depends on the machine's speed, and
control-limits.test.ts pins those), every raw signal recorded by its run as refused,
 * the stopped runs stopped once and the others completed once.
 */
it('answers a flood of controls truthfully and loses, duplicates and strands nothing', { timeout: 120_000 }, async () => {
  const result = await runDrill('control-flood', {
    runs: 6,
    steps: 6,
    stepMs: 1000,
    kills: 0,
    outageSeconds: 0,
    floodSeconds: 4,
    spareSkillSteps: false,
    timeoutSeconds: 90,
    workflowBundlePath: inject('workflowBundlePath'),
    postgresUrl: inject('databaseUrl'),
    redisUrl: inject('redisUrl'),
  });
  expect(result.counts, result.report).toEqual({ completed: 6, lost: 0, duplicated: 0, stuck: 0 });
  expect(result.events.problems, result.report).toEqual([]);
  expect(result.timeline.some((e) => /0 5xx, .*; 0 untruthful/.test(e.what)), result.report).toBe(true);
  expect(result.passed, result.report).toBe(true);
});

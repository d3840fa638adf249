import type { Command } from 'commander';
import type { RetentionSettings } from '../core/retention';
import { contextOf } from './context';
import { UsageError } from './exit-codes';
import { table } from './format';
import { wholeNumber } from './parsers';

function settingsText(s: RetentionSettings): string {
  return table(
    ['RECORDS', 'KEPT'],
    [
      ['runs and their records', `${s.runsDays} days${s.exportBeforePrune ? ', exported before removal' : ''}`],
      ['published outbox rows', `${s.outboxHours} hours`],
      ['delivered control pushes', `${s.controlPushesHours} hours`],
      ['alerts', `${s.alertsDays} days`],
    ],
  );
}

interface SetOptions {
  runsDays?: number;
  outboxHours?: number;
  pushesHours?: number;
  alertsDays?: number;
  export?: boolean;
}

export function registerRetentionCommands(program: Command): void {
  const retention = program.command('retention').description("how long your tenant's runs and event records are kept (admin key)");

  retention
    .command('get')
    .description('the retention settings (the defaults when never set)')
    .action(async (_options: unknown, command: Command) => {
      const ctx = contextOf(command);
      const settings = await ctx.api.get<RetentionSettings>('/tenant/retention');
      ctx.print(settings, () => settingsText(settings));
    });

  retention
    .command('set')
    .description('change some settings, keeping the others; the next retention pass applies them')
    .option('--runs-days <n>', 'days a finished run and every record of it are kept', wholeNumber(1, 36_500))
    .option('--outbox-hours <n>', 'hours a published outbox row is kept', wholeNumber(1, 876_000))
    .option('--pushes-hours <n>', 'hours a delivered control push is kept', wholeNumber(1, 876_000))
    .option('--alerts-days <n>', 'days an alert is kept', wholeNumber(1, 36_500))
    .option('--export', "export each run's records to the operator's folder before removing them")
    .option('--no-export', 'remove runs without exporting them')
    .addHelpText('after', '\nExample:\n  governed retention set --runs-days 365 --export')
    .action(async (options: SetOptions, command: Command) => {
      const ctx = contextOf(command);
      const changes: Partial<RetentionSettings> = {
        ...(options.runsDays === undefined ? {} : { runsDays: options.runsDays }),
        ...(options.outboxHours === undefined ? {} : { outboxHours: options.outboxHours }),
        ...(options.pushesHours === undefined ? {} : { controlPushesHours: options.pushesHours }),
        ...(options.alertsDays === undefined ? {} : { alertsDays: options.alertsDays }),
        ...(options.export === undefined ? {} : { exportBeforePrune: options.export }),
      };
      if (Object.keys(changes).length === 0) throw new UsageError('nothing to set: give at least one of --runs-days, --outbox-hours, --pushes-hours, --alerts-days, --export, --no-export');
      const current = await ctx.api.get<RetentionSettings>('/tenant/retention');
      const stored = await ctx.api.put<RetentionSettings>('/tenant/retention', { ...current, ...changes });
      ctx.print(stored, () => settingsText(stored));
    });
}

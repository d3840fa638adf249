import type { Command } from 'commander';
import { contextOf } from './context';
import { table, truncate, when } from './format';
import { control } from './runs';

interface Approval {
  runId: string;
  status: string;
  tool: string;
  arguments: string | null;
  argsSha256: string;
  stepIndex: number;
  turn: number;
  callIndex: number;
  requestedAt: string;
  decidedBy: string | null;
}

/** Tool calls that wait for a person: list them with their exact arguments, approve or deny one by its hash. */
export function registerApprovalCommands(program: Command): void {
  const approvals = program.command('approvals').description("an agent's tool calls that need a person: list, approve, deny");

  approvals
    .command('list')
    .description('tool calls waiting for approval (or --status approved|denied|expired|all), with their exact arguments and hash')
    .option('--status <status>', 'pending, approved, denied, expired or all', 'pending')
    .action(async (options: { status: string }, command: Command) => {
      const ctx = contextOf(command);
      const answer = await ctx.api.get<{ approvals: Approval[] }>('/approvals', { status: options.status });
      ctx.print(answer, () => {
        if (answer.approvals.length === 0) return `no ${options.status === 'all' ? '' : `${options.status} `}approvals`;
        return table(
          ['RUN', 'STATUS', 'TOOL', 'ARGUMENTS', 'SHA256', 'AT', 'BY'],
          answer.approvals.map((a) => [a.runId, a.status, a.tool, truncate(a.arguments ?? '', 60), a.argsSha256, when(a.requestedAt), a.decidedBy ?? '']),
        );
      });
    });

  for (const decision of ['approve', 'deny'] as const) {
    approvals
      .command(`${decision} <run> <argsSha256>`)
      .description(
        decision === 'approve'
          ? 'approve the call the run waits on; the hash binds the approval to the arguments you saw (another call, or changed arguments, are refused: 409)'
          : 'deny the call the run waits on: the model is told, or the run fails under a FAIL_RUN tool policy',
      )
      .option('--reason <text>', 'why, recorded with the decision')
      .option('--idempotency-key <key>', 'repeat an earlier attempt safely: one key counts once (default: a new key for each invocation)')
      .action(async (run: string, argsSha256: string, options: { reason?: string; idempotencyKey?: string }, command: Command) => {
        await control(contextOf(command), run, decision, { argsSha256, reason: options.reason }, options.idempotencyKey, `governed approvals ${decision} ${run} ${argsSha256}`);
      });
  }
}

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { describeBreak, verifyEvidence } from '../core/evidence';
import { contextOf } from './context';
import { CliError, EXIT, UsageError } from './exit-codes';

/** `governed runs evidence RUN`: the run's evidence (JSONL) as the API exports it, to stdout. */
export async function printRunEvidence(command: Command, id: string): Promise<void> {
  const ctx = contextOf(command);
  const text = await ctx.api.getText(`/runs/${encodeURIComponent(id)}/evidence`);
  process.stdout.write(text);
}

/** `governed evidence verify FILE`: checks an export offline; exit 1 names the first record that does not hold. */
export function registerEvidenceCommands(program: Command): void {
  const evidence = program.command('evidence').description("check a run's exported evidence offline");
  evidence
    .command('verify <file>')
    .description("check an export of 'governed runs evidence' (or '-' for stdin) with no API: exit 0 when its chain holds, 1 naming the first record that does not")
    .action((file: string, _options: unknown, command: Command) => {
      const ctx = contextOf(command);
      let text: string;
      try {
        text = readFileSync(file === '-' ? 0 : file, 'utf8');
      } catch (err) {
        throw new UsageError(`cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`);
      }
      const verdict = verifyEvidence(text, (input) => createHash('sha256').update(input, 'utf8').digest('hex'));
      if (verdict.ok) {
        ctx.print(verdict, () =>
          [
            `evidence of run ${verdict.runId} holds: ${verdict.links} link(s) over ${verdict.records} record(s)`,
            verdict.head ? `head #${verdict.head.seq} ${verdict.head.hash}` : 'no links',
            verdict.anchored ? "anchored in its tenant's chain" : "not anchored in its tenant's chain (the run did not finalize)",
          ].join('\n'),
        );
        return;
      }
      if (ctx.json) ctx.print(verdict, () => '');
      throw new CliError(`evidence${verdict.runId ? ` of run ${verdict.runId}` : ''} does not hold: ${describeBreak(verdict.break)}`, EXIT.FAILED);
    });
}

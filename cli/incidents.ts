import type { Command } from 'commander';
import { contextOf } from './context';
import { fields, table, truncate, when } from './format';
import { wholeNumber } from './parsers';

interface Incident {
  id: string;
  runId: string;
  kind: string;
  severity: string;
  status: string;
  errorCode: string | null;
  message: string;
  createdAt: string;
  acknowledgedBy?: string | null;
  resolvedBy?: string | null;
  note?: string | null;
}

export function registerIncidentCommands(program: Command): void {
  const incidents = program.command('incidents').description("your tenant's incidents: list, acknowledge, resolve");

  incidents
    .command('list')
    .description('incidents, newest first')
    .option('--status <list>', 'comma-separated: open, acknowledged, resolved')
    .option('--severity <list>', 'comma-separated: LOW, MEDIUM, HIGH, CRITICAL')
    .option('--run <id>', "one run's incidents")
    .option('--limit <n>', 'incidents per page (1-200)', wholeNumber(1, 200))
    .option('--cursor <cursor>', 'the next page, as printed under the previous one')
    .action(async (options: { status?: string; severity?: string; run?: string; limit?: number; cursor?: string }, command: Command) => {
      const ctx = contextOf(command);
      const { run, ...query } = options;
      const page = await ctx.api.get<{ incidents: Incident[]; nextCursor: string | null }>('/incidents', { ...query, runId: run });
      ctx.print(page, () => {
        if (page.incidents.length === 0) return 'no incidents';
        const body = table(
          ['INCIDENT', 'SEVERITY', 'STATUS', 'KIND', 'CODE', 'RUN', 'CREATED', 'MESSAGE'],
          page.incidents.map((i) => [i.id, i.severity, i.status, i.kind, i.errorCode ?? '', i.runId, when(i.createdAt), truncate(i.message, 60)]),
        );
        return page.nextCursor ? `${body}\nmore: --cursor ${page.nextCursor}` : body;
      });
    });

  for (const [name, action] of [
    ['ack', 'acknowledge'],
    ['resolve', 'resolve'],
  ] as const) {
    incidents
      .command(`${name} <id>`)
      .description(`${action} an incident`)
      .option('--note <text>', 'recorded with the change')
      .action(async (id: string, options: { note?: string }, command: Command) => {
        const ctx = contextOf(command);
        const incident = await ctx.api.post<Incident>(`/incidents/${encodeURIComponent(id)}/${action}`, { note: options.note });
        ctx.print(incident, () =>
          fields([
            ['incident', incident.id],
            ['status', incident.status],
            ['by', incident.resolvedBy ?? incident.acknowledgedBy ?? undefined],
            ['note', incident.note ?? undefined],
          ]),
        );
      });
  }
}

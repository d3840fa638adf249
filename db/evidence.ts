import { eq, inArray, sql } from 'drizzle-orm';
import { EVIDENCE_FORMAT, type BreakReason, type EvidenceBreak, type EvidenceContent, type EvidenceLine, type EvidenceRecordLine } from '../core/evidence';
import type { DbOrTx } from './client';
import { runs, tenantEvidenceLinks } from './schema';

/**
 * The evidence chains, one owner. The links themselves are written by Postgres, in the
 * transaction of the record they cover (the `evidence_chain` trigger of migration
 * 0013_evidence_chain: no write path can skip it, and it costs no round trip); this module reads
 * them back beside the live records, for the export and for the reconciler's check.
 */

interface EvidenceRow extends Record<string, unknown> {
  seq: number | null;
  record_kind: string;
  record_key: string;
  content_hash: string | null;
  prev_hash: string | null;
  hash: string | null;
  created_at: string | Date | null;
  latest: boolean;
  present: boolean;
  content: EvidenceContent | null;
}

/** The run's evidence as the export's lines: a header, each link in order (then any unchained record), the tenant link. */
export async function runEvidenceLines(db: DbOrTx, run: { id: string; tenantId: string }): Promise<EvidenceLine[]> {
  const [rows, anchors] = await Promise.all([
    db.execute<EvidenceRow>(sql`select * from evidence_of_run(${run.id}::uuid)`),
    db.select().from(tenantEvidenceLinks).where(eq(tenantEvidenceLinks.runId, run.id)),
  ]);
  const records: EvidenceRecordLine[] = rows.map((r) => ({
    type: 'record',
    seq: r.seq,
    kind: r.record_kind,
    key: r.record_key,
    contentHash: r.content_hash,
    prevHash: r.prev_hash,
    hash: r.hash,
    at: r.created_at === null ? null : new Date(r.created_at).toISOString(),
    superseded: !r.latest,
    content: r.latest ? r.content : null,
  }));
  return [
    { type: 'evidence', format: EVIDENCE_FORMAT, runId: run.id, tenantId: run.tenantId, exportedAt: new Date().toISOString() },
    ...records,
    ...anchors.map((a) => ({ type: 'tenant_link' as const, tenantId: a.tenantId, seq: a.seq, runSeq: a.runSeq, runHash: a.runHash, prevHash: a.prevHash, hash: a.hash })),
  ];
}

/** What `evidence_first_break` answers: where the run's evidence first does not hold. */
/** The evidence of several runs, each as its export's lines (retention exports them before pruning). */
export async function evidenceOfRuns(db: DbOrTx, runIds: readonly string[]): Promise<Map<string, EvidenceLine[]>> {
  if (runIds.length === 0) return new Map();
  const owned = await db.select({ id: runs.id, tenantId: runs.tenantId }).from(runs).where(inArray(runs.id, [...runIds]));
  const byRun = new Map<string, EvidenceLine[]>();
  for (const run of owned) byRun.set(run.id, await runEvidenceLines(db, run));
  return byRun;
}

export interface StoredBreak {
  seq: number | null;
  kind: string;
  key: string;
  because: BreakReason;
}

export function breakOf(stored: StoredBreak): EvidenceBreak {
  return { line: 0, seq: stored.seq, kind: stored.kind, key: stored.key, because: stored.because, detail: '' };
}

/** The first break in the run's evidence, checked in the database; null when it holds. */
export async function firstEvidenceBreak(db: DbOrTx, runId: string): Promise<EvidenceBreak | null> {
  const [row] = await db.execute<{ found: StoredBreak | null }>(sql`select evidence_first_break(${runId}::uuid) as found`);
  return row?.found ? breakOf(row.found) : null;
}

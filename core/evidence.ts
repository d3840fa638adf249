/**
 * The evidence format (README, "Evidence") and its offline check. A run's evidence is a chain: one
 * link per version of each record the audit contract covers, in the order they were written; a
 * link's hash covers the run, its place, the link before it, the record's kind and key and the
 * hash of the record's content. Postgres writes the links (db/migrations, `evidence_chain`); this
 * module re-computes them from an export, with no database, and names the first that does not hold.
 * The hash definitions here and in the migration's SQL functions must stay the same. SHA-256 is
 * passed in (`Sha256`): these rules stay pure, and the CLI and tests give Node's.
 */
export const EVIDENCE_FORMAT = 'governed-evidence/1';

/** The hash the first link follows. */
export const GENESIS_HASH = '0'.repeat(64);

/** What kinds of record a run's chain holds, and which table each is (README, "Evidence"). */
export const EVIDENCE_KINDS = ['run', 'trace', 'trace_step', 'output', 'approval', 'incident', 'evaluation', 'lesson', 'log', 'ack', 'control', 'verdict'] as const;
export type EvidenceKind = (typeof EVIDENCE_KINDS)[number];

/** A record's content: its columns, every value as the text Postgres prints (null for SQL null). */
export type EvidenceContent = Record<string, string | null>;

export interface EvidenceHeader {
  type: 'evidence';
  format: typeof EVIDENCE_FORMAT;
  runId: string;
  tenantId: string;
  exportedAt: string;
}

/**
 * One link, or one record no link covers (`seq` null). The latest link of a record carries the
 * record as it is now (`content`); an earlier one is `superseded` (the record moved on, e.g. an
 * incident resolved) and carries only its hash. A latest link whose row is gone has `content` null.
 */
export interface EvidenceRecordLine {
  type: 'record';
  seq: number | null;
  kind: string;
  key: string;
  contentHash: string | null;
  prevHash: string | null;
  hash: string | null;
  at: string | null;
  superseded: boolean;
  content: EvidenceContent | null;
}

/** The run's place in its tenant's chain, written when the run finalized. */
export interface EvidenceTenantLine {
  type: 'tenant_link';
  tenantId: string;
  seq: number;
  runSeq: number;
  runHash: string;
  prevHash: string;
  hash: string;
}

export type EvidenceLine = EvidenceHeader | EvidenceRecordLine | EvidenceTenantLine;

/** SHA-256 of the text's UTF-8 bytes, as lowercase hex. */
export type Sha256 = (text: string) => string;

/** The bytes a record's content hash covers: JSON, keys in code-unit order, no spaces. */
export function canonicalContent(content: EvidenceContent): string {
  const keys = Object.keys(content).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify(Object.fromEntries(keys.map((k) => [k, content[k] ?? null])));
}

export function contentHash(sha256: Sha256, content: EvidenceContent): string {
  return sha256(canonicalContent(content));
}

export function linkHash(sha256: Sha256, link: { runId: string; seq: number; prevHash: string; kind: string; key: string; contentHash: string }): string {
  return sha256([link.runId, String(link.seq), link.prevHash, link.kind, link.key, link.contentHash].join('\n'));
}

export function tenantLinkHash(sha256: Sha256, link: { tenantId: string; seq: number; prevHash: string; runId: string; runSeq: number; runHash: string }): string {
  return sha256([link.tenantId, String(link.seq), link.prevHash, link.runId, String(link.runSeq), link.runHash].join('\n'));
}

export const BREAK_REASONS = ['LINK_BROKEN', 'CONTENT_CHANGED', 'RECORD_GONE', 'UNCHAINED', 'ANCHOR_MISMATCH', 'MALFORMED'] as const;
export type BreakReason = (typeof BREAK_REASONS)[number];

/** Where the evidence first does not hold: the record (its link's seq, kind and key) and why. */
export interface EvidenceBreak {
  /** 1-based line of the export; 0 when the database found it. */
  line: number;
  seq: number | null;
  kind: string;
  key: string;
  because: BreakReason;
  detail: string;
}

export type EvidenceVerdict =
  | { ok: true; runId: string; links: number; records: number; head: { seq: number; hash: string } | null; anchored: boolean }
  | { ok: false; runId: string | null; break: EvidenceBreak };

const BECAUSE_IN_WORDS: Record<BreakReason, string> = {
  LINK_BROKEN: "the link does not follow from the one before it (a link edited, removed or reordered)",
  CONTENT_CHANGED: 'the record was changed after it was chained',
  RECORD_GONE: 'the record was deleted after it was chained',
  UNCHAINED: 'the record is not in the chain (written behind its back, or before evidence was kept)',
  ANCHOR_MISMATCH: "the tenant's chain holds another head for this run",
  MALFORMED: 'the line is not part of the format',
};

export function describeBreak(b: EvidenceBreak): string {
  const where = b.seq === null ? `${b.kind} ${b.key}` : `record #${b.seq} (${b.kind} ${b.key})`;
  return `${where}${b.line > 0 ? ` at line ${b.line}` : ''}: ${BECAUSE_IN_WORDS[b.because]}${b.detail ? `; ${b.detail}` : ''}`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isContent(value: unknown): value is EvidenceContent {
  return isObject(value) && Object.values(value).every((v) => v === null || typeof v === 'string');
}

/**
 * Checks an export (its JSONL text) offline: the header names the run; links are numbered 1, 2, …
 * with none missing, each following from the one before; each record's latest link matches the
 * record's content; no record is outside the chain; the tenant link, when present, names the
 * chain's hash at its place and hashes as it says. Answers the first line that does not hold.
 */
export function verifyEvidence(text: string, sha256: Sha256): EvidenceVerdict {
  const lines = text.split('\n');
  let runId: string | null = null;
  let expectedSeq = 1;
  let prev = GENESIS_HASH;
  const hashAt = new Map<number, string>();
  /** Records whose last line so far is superseded: a later link of theirs must follow. */
  const awaitingSuccessor = new Map<string, { line: number; seq: number; kind: string; key: string }>();
  let records = 0;
  let anchored = false;
  const fail = (line: number, seq: number | null, kind: string, key: string, because: BreakReason, detail = ''): EvidenceVerdict => ({
    ok: false,
    runId,
    break: { line, seq, kind, key, because, detail },
  });

  for (let i = 0; i < lines.length; i += 1) {
    const raw = lines[i]!.trim();
    const lineNo = i + 1;
    if (raw === '') continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      return fail(lineNo, null, 'line', String(lineNo), 'MALFORMED', 'not JSON');
    }
    if (!isObject(parsed)) return fail(lineNo, null, 'line', String(lineNo), 'MALFORMED', 'not a JSON object');
    if (runId === null) {
      if (parsed.type !== 'evidence' || parsed.format !== EVIDENCE_FORMAT || typeof parsed.runId !== 'string') {
        return fail(lineNo, null, 'line', String(lineNo), 'MALFORMED', `the first line must be the ${EVIDENCE_FORMAT} header`);
      }
      runId = parsed.runId;
      continue;
    }
    if (parsed.type === 'tenant_link') {
      const t = parsed as unknown as EvidenceTenantLine;
      if (typeof t.tenantId !== 'string' || !Number.isInteger(t.seq) || !Number.isInteger(t.runSeq) || typeof t.runHash !== 'string' || typeof t.prevHash !== 'string') {
        return fail(lineNo, null, 'tenant_link', runId, 'MALFORMED', 'a tenant link needs tenantId, seq, runSeq, runHash, prevHash and hash');
      }
      if (hashAt.get(t.runSeq) !== t.runHash || t.hash !== tenantLinkHash(sha256, { ...t, runId })) {
        return fail(lineNo, t.runSeq, 'tenant_link', runId, 'ANCHOR_MISMATCH', `tenant link #${t.seq} names run link #${t.runSeq}`);
      }
      anchored = true;
      continue;
    }
    if (parsed.type !== 'record' || typeof parsed.kind !== 'string' || typeof parsed.key !== 'string') {
      return fail(lineNo, null, 'line', String(lineNo), 'MALFORMED', 'a record line needs type "record", kind and key');
    }
    const r = parsed as unknown as EvidenceRecordLine;
    const recordId = `${r.kind}\n${r.key}`;
    records += r.superseded ? 0 : 1;
    if (r.seq === null) return fail(lineNo, null, r.kind, r.key, 'UNCHAINED');
    if (r.seq !== expectedSeq || r.prevHash !== prev || typeof r.contentHash !== 'string' || r.hash !== linkHash(sha256, { runId, seq: r.seq, prevHash: prev, kind: r.kind, key: r.key, contentHash: r.contentHash })) {
      return fail(lineNo, typeof r.seq === 'number' ? r.seq : null, r.kind, r.key, 'LINK_BROKEN', r.seq !== expectedSeq ? `expected link #${expectedSeq}` : '');
    }
    awaitingSuccessor.delete(recordId);
    if (r.superseded) {
      awaitingSuccessor.set(recordId, { line: lineNo, seq: r.seq, kind: r.kind, key: r.key });
    } else if (r.content === null) {
      return fail(lineNo, r.seq, r.kind, r.key, 'RECORD_GONE');
    } else if (!isContent(r.content)) {
      return fail(lineNo, r.seq, r.kind, r.key, 'MALFORMED', 'content must be an object of text values');
    } else if (contentHash(sha256, r.content) !== r.contentHash) {
      return fail(lineNo, r.seq, r.kind, r.key, 'CONTENT_CHANGED');
    }
    hashAt.set(r.seq, r.hash);
    prev = r.hash;
    expectedSeq += 1;
  }
  if (runId === null) return fail(1, null, 'line', '1', 'MALFORMED', 'empty export');
  const orphan = [...awaitingSuccessor.values()].sort((a, b) => a.seq - b.seq)[0];
  if (orphan) return fail(orphan.line, orphan.seq, orphan.kind, orphan.key, 'LINK_BROKEN', 'marked superseded, but no later link of the record follows');
  const links = expectedSeq - 1;
  return { ok: true, runId, links, records, head: links > 0 ? { seq: links, hash: prev } : null, anchored };
}

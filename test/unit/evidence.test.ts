import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  EVIDENCE_FORMAT,
  GENESIS_HASH,
  canonicalContent,
  contentHash,
  describeBreak,
  linkHash,
  tenantLinkHash,
  verifyEvidence,
  type EvidenceContent,
  type EvidenceLine,
  type EvidenceRecordLine,
} from '../../core/evidence';

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');
const RUN = '11111111-1111-4111-8111-111111111111';
const TENANT = '22222222-2222-4222-8222-222222222222';

/** Builds an export as db/evidence.ts writes one: each record's versions chained in order, the last carrying content. */
function exportOf(records: { kind: string; key: string; versions: EvidenceContent[] }[], order?: [number, number][]): EvidenceLine[] {
  const steps = order ?? records.flatMap((r, i) => r.versions.map((_, v) => [i, v] as [number, number]));
  const lines: EvidenceRecordLine[] = [];
  let prev = GENESIS_HASH;
  steps.forEach(([i, v], n) => {
    const r = records[i]!;
    const seq = n + 1;
    const content = r.versions[v]!;
    const ch = contentHash(sha256, content);
    const hash = linkHash(sha256, { runId: RUN, seq, prevHash: prev, kind: r.kind, key: r.key, contentHash: ch });
    const latest = !steps.slice(n + 1).some(([j]) => j === i);
    lines.push({ type: 'record', seq, kind: r.kind, key: r.key, contentHash: ch, prevHash: prev, hash, at: null, superseded: !latest, content: latest ? content : null });
    prev = hash;
  });
  const head = lines.at(-1)!;
  const tenantPrev = 'a'.repeat(64);
  return [
    { type: 'evidence', format: EVIDENCE_FORMAT, runId: RUN, tenantId: TENANT, exportedAt: '2026-01-01T00:00:00.000Z' },
    ...lines,
    {
      type: 'tenant_link',
      tenantId: TENANT,
      seq: 7,
      runSeq: head.seq!,
      runHash: head.hash!,
      prevHash: tenantPrev,
      hash: tenantLinkHash(sha256, { tenantId: TENANT, seq: 7, prevHash: tenantPrev, runId: RUN, runSeq: head.seq!, runHash: head.hash! }),
    },
  ];
}

const jsonl = (lines: unknown[]) => lines.map((l) => JSON.stringify(l)).join('\n') + '\n';

const RECORDS = [
  { kind: 'run', key: RUN, versions: [{ id: RUN, phase: 'CREATED', cost_usd: '0' }, { id: RUN, phase: 'COMPLETED', cost_usd: '0.000123' }] },
  { kind: 'trace_step', key: 's1', versions: [{ id: 's1', cost_usd: '0.000123', output_preview: 'line\n"quoted"' }] },
  { kind: 'control', key: 'c1', versions: [{ id: 'c1', actor: 'api-key:abc', detail: null }] },
];
/** run v0, step, control, run v1: the run's record moved on after the others were written. */
const ORDER: [number, number][] = [
  [0, 0],
  [1, 0],
  [2, 0],
  [0, 1],
];

describe('canonical content', () => {
  it('orders keys by code unit and writes no spaces, whatever order the object came in', () => {
    expect(canonicalContent({ b: '2', a: '1', B: null, _x: 'y' })).toBe('{"B":null,"_x":"y","a":"1","b":"2"}');
    expect(canonicalContent({ a: '1', b: '2' })).toBe(canonicalContent({ b: '2', a: '1' }));
  });

  it('escapes as JSON does, and hashes a changed value, key or null differently', () => {
    expect(canonicalContent({ t: 'a"b\\c\nd\u0001' })).toBe('{"t":"a\\"b\\\\c\\nd\\u0001"}');
    const base = contentHash(sha256, { a: '1', b: null });
    expect(contentHash(sha256, { b: null, a: '1' })).toBe(base);
    expect(contentHash(sha256, { a: '1', b: '' })).not.toBe(base);
    expect(contentHash(sha256, { a: '1.0', b: null })).not.toBe(base);
    expect(contentHash(sha256, { a: '1', c: null })).not.toBe(base);
  });

  it('links a record to its run, place and predecessor', () => {
    const link = { runId: RUN, seq: 1, prevHash: GENESIS_HASH, kind: 'run', key: RUN, contentHash: 'c'.repeat(64) };
    const hash = linkHash(sha256, link);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    for (const changed of [{ runId: TENANT }, { seq: 2 }, { prevHash: 'f'.repeat(64) }, { kind: 'trace' }, { key: 'x' }, { contentHash: 'd'.repeat(64) }]) {
      expect(linkHash(sha256, { ...link, ...changed })).not.toBe(hash);
    }
  });
});

describe('verifyEvidence', () => {
  const clean = exportOf(RECORDS, ORDER);

  it('holds for an export as written, superseded versions included', () => {
    const verdict = verifyEvidence(jsonl(clean), sha256);
    expect(verdict).toEqual({ ok: true, runId: RUN, links: 4, records: 3, head: { seq: 4, hash: (clean[4] as EvidenceRecordLine).hash }, anchored: true });
  });

  it('names the record whose content changed, at its line', () => {
    const lines = structuredClone(clean);
    (lines[2] as EvidenceRecordLine).content!.cost_usd = '0.000124';
    const verdict = verifyEvidence(jsonl(lines), sha256);
    expect(verdict).toMatchObject({ ok: false, runId: RUN, break: { line: 3, seq: 2, kind: 'trace_step', key: 's1', because: 'CONTENT_CHANGED' } });
    if (!verdict.ok) expect(describeBreak(verdict.break)).toBe('record #2 (trace_step s1) at line 3: the record was changed after it was chained');
  });

  it('names the first record when more than one changed', () => {
    const lines = structuredClone(clean);
    (lines[3] as EvidenceRecordLine).content!.actor = 'someone-else';
    (lines[2] as EvidenceRecordLine).content!.cost_usd = '1';
    expect(verifyEvidence(jsonl(lines), sha256)).toMatchObject({ ok: false, break: { seq: 2, kind: 'trace_step' } });
  });

  it('finds a link removed, reordered, or re-hashed', () => {
    const removed = clean.filter((l) => !(l.type === 'record' && l.seq === 2));
    expect(verifyEvidence(jsonl(removed), sha256)).toMatchObject({ ok: false, break: { seq: 3, kind: 'control', because: 'LINK_BROKEN' } });
    const swapped = [clean[0], clean[2], clean[1], ...clean.slice(3)];
    expect(verifyEvidence(jsonl(swapped), sha256)).toMatchObject({ ok: false, break: { line: 2, seq: 2, because: 'LINK_BROKEN' } });
    // A record edited and its content hash recomputed: the link's own hash no longer follows.
    const rehashed = structuredClone(clean);
    const step = rehashed[2] as EvidenceRecordLine;
    step.content!.cost_usd = '9';
    step.contentHash = contentHash(sha256, step.content!);
    expect(verifyEvidence(jsonl(rehashed), sha256)).toMatchObject({ ok: false, break: { seq: 2, because: 'LINK_BROKEN' } });
  });

  it('finds a record gone, a record outside the chain, and a superseded version with no successor', () => {
    const gone = structuredClone(clean);
    (gone[3] as EvidenceRecordLine).content = null;
    expect(verifyEvidence(jsonl(gone), sha256)).toMatchObject({ ok: false, break: { seq: 3, kind: 'control', because: 'RECORD_GONE' } });

    const unchained: EvidenceRecordLine = { type: 'record', seq: null, kind: 'ack', key: 'a9', contentHash: null, prevHash: null, hash: null, at: null, superseded: false, content: { id: 'a9' } };
    const withStray = [...clean.slice(0, 5), unchained, clean[5]!];
    expect(verifyEvidence(jsonl(withStray), sha256)).toMatchObject({ ok: false, break: { line: 6, seq: null, kind: 'ack', key: 'a9', because: 'UNCHAINED' } });

    // The run's last version cut off the end (and the tenant link with it): its earlier version claims a successor.
    const truncated = clean.slice(0, 4);
    expect(verifyEvidence(jsonl(truncated), sha256)).toMatchObject({ ok: false, break: { seq: 1, kind: 'run', because: 'LINK_BROKEN' } });
  });

  it("checks the tenant link against the chain's head", () => {
    const lines = structuredClone(clean);
    const anchor = lines[5] as Extract<EvidenceLine, { type: 'tenant_link' }>;
    anchor.runSeq = 3;
    expect(verifyEvidence(jsonl(lines), sha256)).toMatchObject({ ok: false, break: { seq: 3, kind: 'tenant_link', because: 'ANCHOR_MISMATCH' } });
    const unanchored = verifyEvidence(jsonl(clean.slice(0, 5)), sha256);
    expect(unanchored).toMatchObject({ ok: true, anchored: false });
  });

  it('refuses what is not an export', () => {
    expect(verifyEvidence('', sha256)).toMatchObject({ ok: false, break: { because: 'MALFORMED' } });
    expect(verifyEvidence('{"type":"record"}\n', sha256)).toMatchObject({ ok: false, break: { line: 1, because: 'MALFORMED' } });
    expect(verifyEvidence(`${JSON.stringify(clean[0])}\nnot json\n`, sha256)).toMatchObject({ ok: false, break: { line: 2, because: 'MALFORMED' } });
    const numeric = structuredClone(clean);
    (numeric[2] as unknown as { content: Record<string, unknown> }).content.cost_usd = 0.000123;
    expect(verifyEvidence(jsonl(numeric), sha256)).toMatchObject({ ok: false, break: { seq: 2, because: 'MALFORMED' } });
  });
});

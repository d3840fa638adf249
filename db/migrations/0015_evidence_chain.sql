CREATE TABLE "evidence_links" (
	"run_id" uuid NOT NULL,
	"tenant_id" uuid NOT NULL,
	"seq" integer NOT NULL,
	"record_kind" text NOT NULL,
	"record_key" text NOT NULL,
	"content_hash" text NOT NULL,
	"prev_hash" text NOT NULL,
	"hash" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "evidence_links_run_id_seq_pk" PRIMARY KEY("run_id","seq")
);
--> statement-breakpoint
CREATE TABLE "tenant_evidence_links" (
	"tenant_id" uuid NOT NULL,
	"seq" integer NOT NULL,
	"run_id" uuid NOT NULL,
	"run_seq" integer NOT NULL,
	"run_hash" text NOT NULL,
	"prev_hash" text NOT NULL,
	"hash" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "tenant_evidence_links_tenant_id_seq_pk" PRIMARY KEY("tenant_id","seq"),
	CONSTRAINT "tenant_evidence_links_run_id_unique" UNIQUE("run_id")
);
--> statement-breakpoint
-- hand-written:
-- The evidence chain (README, "Evidence"; db/evidence.ts). A record's content is its row as
-- `to_jsonb` gives it, every value as text (numbers as Postgres prints them, timestamps in UTC),
-- written as JSON with its keys in byte order and no spaces: exactly what JSON.stringify gives for
-- the same object with sorted keys, so an exported record re-hashes offline (core/evidence.ts).
-- The functions that read rows pin the two settings that change how a row prints.
CREATE FUNCTION evidence_canonical(content jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT '{' || coalesce(string_agg(to_json(e.key)::text || ':' || coalesce(to_json(e.value)::text, 'null'), ',' ORDER BY e.key COLLATE "C"), '') || '}'
    FROM jsonb_each_text(content) e
$$;
--> statement-breakpoint
CREATE FUNCTION evidence_sha256(input text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT encode(sha256(convert_to(input, 'UTF8')), 'hex')
$$;
--> statement-breakpoint
-- What of a row is its record: a run's row also carries its live bookkeeping (where it waits, when
-- it last moved), which changes without being evidence; a verdict is the verdict and its report.
CREATE FUNCTION evidence_record(kind text, row_json jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE kind
    WHEN 'run' THEN row_json - ARRAY['updated_at', 'pause_reason', 'paused_at', 'workflow_started_at', 'task_queue', 'observability_status', 'observability_error']
    WHEN 'verdict' THEN jsonb_build_object('run_id', row_json->'run_id', 'tenant_id', row_json->'tenant_id', 'verdict', row_json->'verdict', 'report', row_json->'report')
    ELSE row_json END
$$;
--> statement-breakpoint
-- The record as exported: every value as its text. `evidence_canonical` writes a record and its
-- content alike (it reads values as text), so the trigger hashes the record without this step.
CREATE FUNCTION evidence_content(kind text, row_json jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT (SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each_text(evidence_record(kind, row_json)) e)
$$;
--> statement-breakpoint
CREATE FUNCTION evidence_link_hash(run_id uuid, seq integer, prev_hash text, kind text, record_key text, content_hash text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT evidence_sha256(run_id::text || E'\n' || seq::text || E'\n' || prev_hash || E'\n' || kind || E'\n' || record_key || E'\n' || content_hash)
$$;
--> statement-breakpoint
CREATE FUNCTION evidence_tenant_link_hash(tenant_id uuid, seq integer, prev_hash text, run_id uuid, run_seq integer, run_hash text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT evidence_sha256(tenant_id::text || E'\n' || seq::text || E'\n' || prev_hash || E'\n' || run_id::text || E'\n' || run_seq::text || E'\n' || run_hash)
$$;
--> statement-breakpoint
-- Appends one link to the run's chain. The advisory lock (held to the end of the transaction)
-- orders the run's writers; each reads the head the previous one committed.
CREATE FUNCTION evidence_append(p_run uuid, p_tenant uuid, p_kind text, p_key text, p_record jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v_seq integer;
  v_prev text;
  v_tenant uuid;
  v_content_hash text := evidence_sha256(evidence_canonical(p_record));
  v_hash text;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended('evidence:' || p_run::text, 0));
  SELECT l.seq, l.hash, l.tenant_id INTO v_seq, v_prev, v_tenant FROM evidence_links l WHERE l.run_id = p_run ORDER BY l.seq DESC LIMIT 1;
  v_tenant := coalesce(p_tenant, v_tenant, (SELECT r.tenant_id FROM runs r WHERE r.id = p_run));
  v_seq := coalesce(v_seq, 0) + 1;
  v_prev := coalesce(v_prev, repeat('0', 64));
  v_hash := evidence_link_hash(p_run, v_seq, v_prev, p_kind, p_key, v_content_hash);
  INSERT INTO evidence_links (run_id, tenant_id, seq, record_kind, record_key, content_hash, prev_hash, hash)
  VALUES (p_run, v_tenant, v_seq, p_kind, p_key, v_content_hash, v_prev, v_hash);
  -- The run's finalize ack closes its evidence: its head joins the tenant's chain, once.
  IF p_kind = 'ack' AND p_record->>'domain' = 'orchestrator' AND p_record->>'action' = 'finalize_run' AND p_record->>'status' = 'OK' THEN
    PERFORM evidence_anchor(v_tenant, p_run, v_seq, v_hash);
  END IF;
END $$;
--> statement-breakpoint
CREATE FUNCTION evidence_anchor(p_tenant uuid, p_run uuid, p_run_seq integer, p_run_hash text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v_seq integer;
  v_prev text;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended('evidence-tenant:' || p_tenant::text, 0));
  SELECT t.seq, t.hash INTO v_seq, v_prev FROM tenant_evidence_links t WHERE t.tenant_id = p_tenant ORDER BY t.seq DESC LIMIT 1;
  v_seq := coalesce(v_seq, 0) + 1;
  v_prev := coalesce(v_prev, repeat('0', 64));
  INSERT INTO tenant_evidence_links (tenant_id, seq, run_id, run_seq, run_hash, prev_hash, hash)
  VALUES (p_tenant, v_seq, p_run, p_run_seq, p_run_hash, v_prev, evidence_tenant_link_hash(p_tenant, v_seq, v_prev, p_run, p_run_seq, p_run_hash))
  ON CONFLICT (run_id) DO NOTHING;
END $$;
--> statement-breakpoint
-- The trigger behind every covered table; TG_ARGV[0] is the record kind. An insert is chained; an
-- update only when it is one of the record's legitimate moves (the WHEN of each update trigger
-- below), so an edit made behind the product's back is not chained and shows as a mismatch.
CREATE FUNCTION evidence_chain() RETURNS trigger LANGUAGE plpgsql SET timezone = 'UTC' SET extra_float_digits = 1 AS $$
DECLARE
  kind text := TG_ARGV[0];
  row_json jsonb := to_jsonb(NEW);
  run uuid := CASE WHEN kind = 'run' THEN (row_json->>'id')::uuid ELSE (row_json->>'run_id')::uuid END;
BEGIN
  PERFORM evidence_append(run, (row_json->>'tenant_id')::uuid, kind,
    CASE WHEN kind = 'verdict' THEN run::text ELSE row_json->>'id' END,
    evidence_record(kind, row_json));
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER evidence_chain AFTER INSERT ON runs FOR EACH ROW EXECUTE FUNCTION evidence_chain('run');
--> statement-breakpoint
CREATE TRIGGER evidence_chain_move AFTER UPDATE ON runs FOR EACH ROW WHEN (OLD.phase IS DISTINCT FROM NEW.phase) EXECUTE FUNCTION evidence_chain('run');
--> statement-breakpoint
CREATE TRIGGER evidence_chain AFTER INSERT ON traces FOR EACH ROW EXECUTE FUNCTION evidence_chain('trace');
--> statement-breakpoint
CREATE TRIGGER evidence_chain_move AFTER UPDATE ON traces FOR EACH ROW
  WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.rolled_back IS DISTINCT FROM NEW.rolled_back) EXECUTE FUNCTION evidence_chain('trace');
--> statement-breakpoint
CREATE TRIGGER evidence_chain AFTER INSERT ON trace_steps FOR EACH ROW EXECUTE FUNCTION evidence_chain('trace_step');
--> statement-breakpoint
CREATE TRIGGER evidence_chain_move AFTER UPDATE ON trace_steps FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION evidence_chain('trace_step');
--> statement-breakpoint
CREATE TRIGGER evidence_chain AFTER INSERT ON step_outputs FOR EACH ROW EXECUTE FUNCTION evidence_chain('output');
--> statement-breakpoint
CREATE TRIGGER evidence_chain AFTER INSERT ON tool_approvals FOR EACH ROW EXECUTE FUNCTION evidence_chain('approval');
--> statement-breakpoint
CREATE TRIGGER evidence_chain_move AFTER UPDATE ON tool_approvals FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION evidence_chain('approval');
--> statement-breakpoint
CREATE TRIGGER evidence_chain AFTER INSERT ON incidents FOR EACH ROW EXECUTE FUNCTION evidence_chain('incident');
--> statement-breakpoint
CREATE TRIGGER evidence_chain_move AFTER UPDATE ON incidents FOR EACH ROW
  WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.rolled_back IS DISTINCT FROM NEW.rolled_back) EXECUTE FUNCTION evidence_chain('incident');
--> statement-breakpoint
CREATE TRIGGER evidence_chain AFTER INSERT ON policy_evaluations FOR EACH ROW EXECUTE FUNCTION evidence_chain('evaluation');
--> statement-breakpoint
CREATE TRIGGER evidence_chain_move AFTER UPDATE ON policy_evaluations FOR EACH ROW WHEN (OLD.rolled_back IS DISTINCT FROM NEW.rolled_back) EXECUTE FUNCTION evidence_chain('evaluation');
--> statement-breakpoint
CREATE TRIGGER evidence_chain AFTER INSERT ON run_logs FOR EACH ROW EXECUTE FUNCTION evidence_chain('log');
--> statement-breakpoint
CREATE TRIGGER evidence_chain AFTER INSERT ON domain_acks FOR EACH ROW EXECUTE FUNCTION evidence_chain('ack');
--> statement-breakpoint
CREATE TRIGGER evidence_chain AFTER INSERT ON run_control_events FOR EACH ROW EXECUTE FUNCTION evidence_chain('control');
--> statement-breakpoint
CREATE TRIGGER evidence_chain_move AFTER UPDATE ON audit_reconciliations FOR EACH ROW
  WHEN (OLD.verdict IS DISTINCT FROM NEW.verdict OR OLD.report IS DISTINCT FROM NEW.report) EXECUTE FUNCTION evidence_chain('verdict');
--> statement-breakpoint
-- A control or an approval edited behind the product's back makes its reconciled run due again,
-- like the other evidence (0004), so the reconciler finds the broken chain.
CREATE TRIGGER audit_changed AFTER INSERT OR UPDATE OR DELETE ON run_control_events FOR EACH ROW EXECUTE FUNCTION audit_mark_changed();
--> statement-breakpoint
CREATE TRIGGER audit_changed AFTER INSERT OR UPDATE OR DELETE ON tool_approvals FOR EACH ROW EXECUTE FUNCTION audit_mark_changed();
--> statement-breakpoint
-- Every live record of the run, as its content: what the chain's links must match.
CREATE FUNCTION evidence_records(p_run uuid) RETURNS TABLE (record_kind text, record_key text, content jsonb)
LANGUAGE sql STABLE SET timezone = 'UTC' SET extra_float_digits = 1 AS $$
  SELECT 'run', t.id::text, evidence_content('run', to_jsonb(t)) FROM runs t WHERE t.id = p_run
  UNION ALL SELECT 'trace', t.id::text, evidence_content('trace', to_jsonb(t)) FROM traces t WHERE t.run_id = p_run
  UNION ALL SELECT 'trace_step', t.id::text, evidence_content('trace_step', to_jsonb(t)) FROM trace_steps t WHERE t.run_id = p_run
  UNION ALL SELECT 'output', t.id::text, evidence_content('output', to_jsonb(t)) FROM step_outputs t WHERE t.run_id = p_run
  UNION ALL SELECT 'approval', t.id::text, evidence_content('approval', to_jsonb(t)) FROM tool_approvals t WHERE t.run_id = p_run
  UNION ALL SELECT 'incident', t.id::text, evidence_content('incident', to_jsonb(t)) FROM incidents t WHERE t.run_id = p_run
  UNION ALL SELECT 'evaluation', t.id::text, evidence_content('evaluation', to_jsonb(t)) FROM policy_evaluations t WHERE t.run_id = p_run
  UNION ALL SELECT 'log', t.id::text, evidence_content('log', to_jsonb(t)) FROM run_logs t WHERE t.run_id = p_run
  UNION ALL SELECT 'ack', t.id::text, evidence_content('ack', to_jsonb(t)) FROM domain_acks t WHERE t.run_id = p_run
  UNION ALL SELECT 'control', t.id::text, evidence_content('control', to_jsonb(t)) FROM run_control_events t WHERE t.run_id = p_run
  -- Chained from its first verdict on (the row written at submit carries none).
  UNION ALL SELECT 'verdict', t.run_id::text, evidence_content('verdict', to_jsonb(t)) FROM audit_reconciliations t WHERE t.run_id = p_run AND t.verdict IS NOT NULL
$$;
--> statement-breakpoint
-- The run's chain beside its live records, in chain order: each link, and for the latest link of
-- each record the record's content now (null when the row is gone); then every live record no
-- link covers (seq null). The export (db/evidence.ts) and the check below read this.
CREATE FUNCTION evidence_of_run(p_run uuid) RETURNS TABLE (
  seq integer, record_kind text, record_key text, content_hash text, prev_hash text, hash text, created_at timestamptz,
  latest boolean, present boolean, content jsonb
) LANGUAGE sql STABLE AS $$
  WITH links AS (SELECT * FROM evidence_links l WHERE l.run_id = p_run),
  latest AS (SELECT DISTINCT ON (l.record_kind, l.record_key) l.record_kind, l.record_key, l.seq FROM links l ORDER BY l.record_kind, l.record_key, l.seq DESC),
  records AS (SELECT * FROM evidence_records(p_run))
  SELECT l.seq, l.record_kind, l.record_key, l.content_hash, l.prev_hash, l.hash, l.created_at,
         m.seq = l.seq, r.record_key IS NOT NULL, CASE WHEN m.seq = l.seq THEN r.content END
    FROM links l
    JOIN latest m ON m.record_kind = l.record_kind AND m.record_key = l.record_key
    LEFT JOIN records r ON r.record_kind = l.record_kind AND r.record_key = l.record_key
  UNION ALL
  SELECT NULL, r.record_kind, r.record_key, NULL, NULL, NULL, NULL, true, true, r.content
    FROM records r
   WHERE NOT EXISTS (SELECT 1 FROM latest m WHERE m.record_kind = r.record_kind AND m.record_key = r.record_key)
  ORDER BY 1 NULLS LAST, 2, 3
$$;
--> statement-breakpoint
-- The first place the run's evidence does not hold, as the offline verifier (core/evidence.ts)
-- would name it, or null: a link out of sequence or whose hash does not follow, a record whose
-- content no longer hashes to its latest link, a record gone, a record no link covers, or a
-- tenant link that names another head than the run's chain has at that point.
CREATE FUNCTION evidence_first_break(p_run uuid) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
  e record;
  expected integer := 0;
  prev text := repeat('0', 64);
  anchor record;
BEGIN
  FOR e IN SELECT * FROM evidence_of_run(p_run) LOOP
    IF e.seq IS NULL THEN
      RETURN jsonb_build_object('seq', NULL, 'kind', e.record_kind, 'key', e.record_key, 'because', 'UNCHAINED');
    END IF;
    expected := expected + 1;
    IF e.seq <> expected OR e.prev_hash <> prev OR e.hash <> evidence_link_hash(p_run, e.seq, e.prev_hash, e.record_kind, e.record_key, e.content_hash) THEN
      RETURN jsonb_build_object('seq', e.seq, 'kind', e.record_kind, 'key', e.record_key, 'because', 'LINK_BROKEN');
    END IF;
    IF e.latest AND NOT e.present THEN
      RETURN jsonb_build_object('seq', e.seq, 'kind', e.record_kind, 'key', e.record_key, 'because', 'RECORD_GONE');
    END IF;
    IF e.latest AND evidence_sha256(evidence_canonical(e.content)) <> e.content_hash THEN
      RETURN jsonb_build_object('seq', e.seq, 'kind', e.record_kind, 'key', e.record_key, 'because', 'CONTENT_CHANGED');
    END IF;
    prev := e.hash;
  END LOOP;
  SELECT t.run_seq, t.run_hash INTO anchor FROM tenant_evidence_links t WHERE t.run_id = p_run;
  IF FOUND AND NOT EXISTS (SELECT 1 FROM evidence_links l WHERE l.run_id = p_run AND l.seq = anchor.run_seq AND l.hash = anchor.run_hash) THEN
    RETURN jsonb_build_object('seq', anchor.run_seq, 'kind', 'tenant_link', 'key', p_run::text, 'because', 'ANCHOR_MISMATCH');
  END IF;
  RETURN NULL;
END $$;

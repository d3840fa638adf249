-- A reconciled run is not read again unless something about it changed: any write to its evidence
-- or its contract (by the system or behind its back) makes it due now. A run in flight (due at its
-- deadline, still ahead) is left alone, so the run path pays one index probe per domain write.
-- When a pass holds the run's row, the update waits for it and then sees due_at null: a change
-- that commits while a run is being reconciled is never lost.
CREATE FUNCTION audit_mark_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  changed record;
BEGIN
  IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
  -- The reconciler's own incidents are its output, not evidence.
  IF TG_TABLE_NAME = 'incidents' THEN
    IF changed.kind = 'audit' THEN RETURN NULL; END IF;
  END IF;
  UPDATE audit_reconciliations SET due_at = LEAST(due_at, now())
   WHERE run_id = changed.run_id AND (due_at IS NULL OR due_at <= now());
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER audit_changed AFTER INSERT OR UPDATE OR DELETE ON domain_acks FOR EACH ROW EXECUTE FUNCTION audit_mark_changed();
--> statement-breakpoint
CREATE TRIGGER audit_changed AFTER INSERT OR UPDATE OR DELETE ON audit_expectations FOR EACH ROW EXECUTE FUNCTION audit_mark_changed();
--> statement-breakpoint
CREATE TRIGGER audit_changed AFTER INSERT OR UPDATE OR DELETE ON incidents FOR EACH ROW EXECUTE FUNCTION audit_mark_changed();
--> statement-breakpoint
CREATE TRIGGER audit_changed AFTER INSERT OR UPDATE OR DELETE ON policy_evaluations FOR EACH ROW EXECUTE FUNCTION audit_mark_changed();
--> statement-breakpoint
CREATE TRIGGER audit_changed AFTER INSERT OR UPDATE OR DELETE ON traces FOR EACH ROW EXECUTE FUNCTION audit_mark_changed();
--> statement-breakpoint
CREATE TRIGGER audit_changed AFTER INSERT OR UPDATE OR DELETE ON trace_steps FOR EACH ROW EXECUTE FUNCTION audit_mark_changed();
--> statement-breakpoint
CREATE TRIGGER audit_changed AFTER INSERT OR UPDATE OR DELETE ON run_logs FOR EACH ROW EXECUTE FUNCTION audit_mark_changed();
--> statement-breakpoint
-- Runs submitted before the audit loop existed: finalized ones are reconciled by the first pass,
-- the others at their finalize_run deadline.
INSERT INTO audit_reconciliations (run_id, tenant_id, due_at, finalized_at)
SELECT r.id, r.tenant_id,
       CASE WHEN fin.created_at IS NOT NULL THEN now() ELSE coalesce(exp.deadline_at, now()) END,
       fin.created_at
  FROM runs r
  LEFT JOIN domain_acks fin
    ON fin.run_id = r.id AND fin.domain = 'orchestrator' AND fin.action = 'finalize_run' AND fin.status = 'OK'
  LEFT JOIN audit_expectations exp
    ON exp.run_id = r.id AND exp.domain = 'orchestrator' AND exp.action = 'finalize_run'
ON CONFLICT DO NOTHING;

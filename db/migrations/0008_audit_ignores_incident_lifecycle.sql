-- Acknowledging or resolving an incident is not evidence of what a run did: such an update no
-- longer makes the run due for reconciliation. Everything else is as in 0004.
CREATE OR REPLACE FUNCTION audit_mark_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  changed record;
BEGIN
  IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
  IF TG_TABLE_NAME = 'incidents' THEN
    -- The reconciler's own incidents are its output, not evidence.
    IF changed.kind = 'audit' THEN RETURN NULL; END IF;
    IF TG_OP = 'UPDATE' AND NEW.run_id = OLD.run_id AND NEW.kind = OLD.kind
       AND NEW.dedupe_key = OLD.dedupe_key AND NEW.rolled_back = OLD.rolled_back THEN
      RETURN NULL;
    END IF;
  END IF;
  UPDATE audit_reconciliations SET due_at = LEAST(due_at, now())
   WHERE run_id = changed.run_id AND (due_at IS NULL OR due_at <= now());
  RETURN NULL;
END $$;

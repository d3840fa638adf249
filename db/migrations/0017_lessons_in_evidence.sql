-- A run's lesson (0016) is a record its audit contract covers: chained like the incident and the
-- evaluation, its rollback a legitimate move (README, "Evidence").
CREATE TRIGGER evidence_chain AFTER INSERT ON lessons FOR EACH ROW EXECUTE FUNCTION evidence_chain('lesson');
--> statement-breakpoint
CREATE TRIGGER evidence_chain_move AFTER UPDATE ON lessons FOR EACH ROW WHEN (OLD.rolled_back IS DISTINCT FROM NEW.rolled_back) EXECUTE FUNCTION evidence_chain('lesson');
--> statement-breakpoint
CREATE OR REPLACE FUNCTION evidence_records(p_run uuid) RETURNS TABLE (record_kind text, record_key text, content jsonb)
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
  UNION ALL SELECT 'lesson', t.id::text, evidence_content('lesson', to_jsonb(t)) FROM lessons t WHERE t.run_id = p_run
  -- Chained from its first verdict on (the row written at submit carries none).
  UNION ALL SELECT 'verdict', t.run_id::text, evidence_content('verdict', to_jsonb(t)) FROM audit_reconciliations t WHERE t.run_id = p_run AND t.verdict IS NOT NULL
$$;

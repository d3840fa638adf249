CREATE TABLE "audit_findings" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"run_id" uuid NOT NULL,
	"tenant_id" uuid NOT NULL,
	"check" text NOT NULL,
	"severity" text NOT NULL,
	"subjects" jsonb NOT NULL,
	"announced" jsonb NOT NULL,
	"announcements" integer DEFAULT 0 NOT NULL,
	"summary" text NOT NULL,
	"incident_id" uuid,
	"first_detected_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_seen_at" timestamp with time zone DEFAULT now() NOT NULL,
	"resolved_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "audit_passes" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"pass_id" text NOT NULL,
	"started_at" timestamp with time zone NOT NULL,
	"finished_at" timestamp with time zone DEFAULT now() NOT NULL,
	"due_runs" integer NOT NULL,
	"verdicts" jsonb NOT NULL,
	"findings_opened" integer NOT NULL,
	"findings_resolved" integer NOT NULL,
	CONSTRAINT "audit_passes_pass_id_unique" UNIQUE("pass_id")
);
--> statement-breakpoint
CREATE TABLE "audit_reconciliations" (
	"run_id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"due_at" timestamp with time zone,
	"finalized_at" timestamp with time zone,
	"verdict" text,
	"report" jsonb,
	"passes" integer DEFAULT 0 NOT NULL,
	"reconciled_at" timestamp with time zone,
	"first_detected_at" timestamp with time zone,
	"last_seen_at" timestamp with time zone,
	"resolved_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "stale_run_reports" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"execution_id" text NOT NULL,
	"generated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"stale_count" integer NOT NULL,
	"runs" jsonb NOT NULL,
	CONSTRAINT "stale_run_reports_execution_id_unique" UNIQUE("execution_id")
);
--> statement-breakpoint
ALTER TABLE "audit_findings" ADD CONSTRAINT "audit_findings_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "audit_findings" ADD CONSTRAINT "audit_findings_incident_id_incidents_id_fk" FOREIGN KEY ("incident_id") REFERENCES "public"."incidents"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "audit_reconciliations" ADD CONSTRAINT "audit_reconciliations_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "audit_findings_run_check_uq" ON "audit_findings" USING btree ("run_id","check");--> statement-breakpoint
CREATE INDEX "audit_findings_open_idx" ON "audit_findings" USING btree ("tenant_id","first_detected_at","id") WHERE "audit_findings"."resolved_at" is null;--> statement-breakpoint
CREATE INDEX "audit_passes_finished_idx" ON "audit_passes" USING btree ("finished_at");--> statement-breakpoint
CREATE INDEX "audit_reconciliations_due_idx" ON "audit_reconciliations" USING btree ("due_at") WHERE "audit_reconciliations"."due_at" is not null;--> statement-breakpoint
CREATE INDEX "audit_reconciliations_unfinalized_idx" ON "audit_reconciliations" USING btree ("created_at") WHERE "audit_reconciliations"."finalized_at" is null;--> statement-breakpoint
CREATE INDEX "stale_run_reports_generated_idx" ON "stale_run_reports" USING btree ("generated_at");
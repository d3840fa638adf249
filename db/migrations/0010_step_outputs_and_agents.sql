CREATE TABLE "step_outputs" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"run_id" uuid NOT NULL,
	"tenant_id" uuid NOT NULL,
	"step_index" integer NOT NULL,
	"turn" integer,
	"call_index" integer,
	"kind" text NOT NULL,
	"content_type" text NOT NULL,
	"content" text NOT NULL,
	"sha256" text NOT NULL,
	"bytes" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "step_outputs_item_uq" UNIQUE NULLS NOT DISTINCT("run_id","step_index","turn","call_index")
);
--> statement-breakpoint
CREATE TABLE "tool_approvals" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"run_id" uuid NOT NULL,
	"tenant_id" uuid NOT NULL,
	"pause_number" integer NOT NULL,
	"step_index" integer NOT NULL,
	"turn" integer NOT NULL,
	"call_index" integer NOT NULL,
	"tool" text NOT NULL,
	"args_sha256" text NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"requested_at" timestamp with time zone DEFAULT now() NOT NULL,
	"decided_at" timestamp with time zone,
	"decided_by" text,
	"authority" text,
	"request_id" text,
	"reason" text
);
--> statement-breakpoint
DROP INDEX "trace_steps_run_step_uq";--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "turns" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "tool_calls" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "trace_steps" ADD COLUMN "turn" integer;--> statement-breakpoint
ALTER TABLE "trace_steps" ADD COLUMN "call_index" integer;--> statement-breakpoint
ALTER TABLE "trace_steps" ADD COLUMN "kind" text DEFAULT 'step' NOT NULL;--> statement-breakpoint
ALTER TABLE "trace_steps" ADD COLUMN "tool" text;--> statement-breakpoint
ALTER TABLE "trace_steps" ADD COLUMN "status" text DEFAULT 'ok' NOT NULL;--> statement-breakpoint
ALTER TABLE "trace_steps" ADD COLUMN "error_code" text;--> statement-breakpoint
ALTER TABLE "trace_steps" ADD COLUMN "output_id" uuid;--> statement-breakpoint
ALTER TABLE "trace_steps" ADD COLUMN "input_sha256" text;--> statement-breakpoint
ALTER TABLE "trace_steps" ADD COLUMN "args_sha256" text;--> statement-breakpoint
ALTER TABLE "step_outputs" ADD CONSTRAINT "step_outputs_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "tool_approvals" ADD CONSTRAINT "tool_approvals_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "tool_approvals_run_pause_uq" ON "tool_approvals" USING btree ("run_id","pause_number");--> statement-breakpoint
CREATE INDEX "tool_approvals_pending_idx" ON "tool_approvals" USING btree ("tenant_id","requested_at") WHERE "tool_approvals"."status" = 'pending';--> statement-breakpoint
ALTER TABLE "trace_steps" ADD CONSTRAINT "trace_steps_item_uq" UNIQUE NULLS NOT DISTINCT("run_id","step_index","turn","call_index");--> statement-breakpoint
-- A stored output is audit evidence like the trace row beside it: changing one makes its run due.
CREATE TRIGGER audit_changed AFTER INSERT OR UPDATE OR DELETE ON step_outputs FOR EACH ROW EXECUTE FUNCTION audit_mark_changed();

CREATE TABLE "control_pushes" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"kind" text NOT NULL,
	"signal" text NOT NULL,
	"payload" jsonb NOT NULL,
	"target" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_error" text,
	"pushed_at" timestamp with time zone,
	"signalled_runs" integer
);
--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "task_queue" text;--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "workflow_started_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "control_pushes" ADD CONSTRAINT "control_pushes_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "control_pushes_pending_idx" ON "control_pushes" USING btree ("next_attempt_at") WHERE "control_pushes"."pushed_at" is null;--> statement-breakpoint
CREATE INDEX "runs_unstarted_idx" ON "runs" USING btree ("created_at") WHERE "runs"."workflow_started_at" is null and "runs"."phase" = 'CREATED';--> statement-breakpoint
-- A run past CREATED had its workflow; one still in CREATED may not have, and the starter will find out.
UPDATE "runs" SET "workflow_started_at" = coalesce("started_at", "created_at") WHERE "phase" <> 'CREATED';

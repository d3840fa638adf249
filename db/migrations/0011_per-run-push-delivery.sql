CREATE TABLE "control_push_deliveries" (
	"push_id" bigint NOT NULL,
	"run_id" uuid NOT NULL,
	"outcome" text DEFAULT 'pending' NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"detail" text,
	"reached_at" timestamp with time zone,
	CONSTRAINT "control_push_deliveries_push_id_run_id_pk" PRIMARY KEY("push_id","run_id")
);
--> statement-breakpoint
ALTER TABLE "control_pushes" ADD COLUMN "total_runs" integer;--> statement-breakpoint
ALTER TABLE "control_pushes" ADD COLUMN "reached_runs" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "control_pushes" ADD COLUMN "skipped_runs" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "control_pushes" ADD COLUMN "claimed_by" text;--> statement-breakpoint
ALTER TABLE "control_pushes" ADD COLUMN "claimed_until" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "control_pushes" ADD COLUMN "stalled_attempts" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "control_push_deliveries" ADD CONSTRAINT "control_push_deliveries_push_id_control_pushes_id_fk" FOREIGN KEY ("push_id") REFERENCES "public"."control_pushes"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "control_push_deliveries" ADD CONSTRAINT "control_push_deliveries_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "control_push_deliveries_pending_idx" ON "control_push_deliveries" USING btree ("push_id","run_id") WHERE "control_push_deliveries"."outcome" = 'pending';
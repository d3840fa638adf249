CREATE TABLE "lessons" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"run_id" uuid NOT NULL,
	"tenant_id" uuid NOT NULL,
	"kind" text NOT NULL,
	"code" text NOT NULL,
	"phase" text,
	"step_index" integer,
	"skill" text,
	"tool" text,
	"policy_rule" text,
	"spend_usd" double precision,
	"detail" text,
	"pattern_key" text NOT NULL,
	"plan_key" text NOT NULL,
	"policy_version" integer,
	"observations" jsonb NOT NULL,
	"rolled_back" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "lessons_run_id_unique" UNIQUE("run_id")
);
--> statement-breakpoint
CREATE TABLE "policy_proposals" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" uuid NOT NULL,
	"kind" text NOT NULL,
	"pattern_key" text NOT NULL,
	"reason" text NOT NULL,
	"changes" jsonb NOT NULL,
	"evidence" jsonb NOT NULL,
	"based_on_version" integer NOT NULL,
	"status" text DEFAULT 'open' NOT NULL,
	"decided_at" timestamp with time zone,
	"decided_by" text,
	"accepted_version" integer,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "lessons" ADD CONSTRAINT "lessons_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "policy_proposals" ADD CONSTRAINT "policy_proposals_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "lessons_tenant_pattern_idx" ON "lessons" USING btree ("tenant_id","pattern_key") WHERE not "lessons"."rolled_back";--> statement-breakpoint
CREATE INDEX "lessons_tenant_created_idx" ON "lessons" USING btree ("tenant_id","created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "policy_proposals_tenant_pattern_uq" ON "policy_proposals" USING btree ("tenant_id","kind","pattern_key");--> statement-breakpoint
CREATE INDEX "policy_proposals_tenant_status_idx" ON "policy_proposals" USING btree ("tenant_id","status","created_at");
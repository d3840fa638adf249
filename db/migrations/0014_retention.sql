CREATE TABLE "run_tombstones" (
	"run_id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"phase" text NOT NULL,
	"run_created_at" timestamp with time zone NOT NULL,
	"run_finished_at" timestamp with time zone,
	"audit_verdict" text,
	"records" integer NOT NULL,
	"export_location" text,
	"export_sha256" text,
	"pruned_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "tenant_retention" (
	"tenant_id" uuid PRIMARY KEY NOT NULL,
	"runs_days" integer NOT NULL,
	"outbox_hours" integer NOT NULL,
	"control_pushes_hours" integer NOT NULL,
	"alerts_days" integer NOT NULL,
	"export_before_prune" boolean NOT NULL,
	"updated_by" text,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "run_tombstones" ADD CONSTRAINT "run_tombstones_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "tenant_retention" ADD CONSTRAINT "tenant_retention_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "run_tombstones_tenant_pruned_idx" ON "run_tombstones" USING btree ("tenant_id","pruned_at");--> statement-breakpoint
CREATE INDEX "control_pushes_pushed_idx" ON "control_pushes" USING btree ("tenant_id","pushed_at") WHERE "control_pushes"."pushed_at" is not null;--> statement-breakpoint
CREATE INDEX "outbox_done_idx" ON "outbox" USING btree ("tenant_id","created_at") WHERE "outbox"."published_at" is not null or "outbox"."retracted_at" is not null;
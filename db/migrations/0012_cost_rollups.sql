CREATE TABLE "cost_rollups" (
	"tenant_id" uuid NOT NULL,
	"bucket_start" timestamp with time zone NOT NULL,
	"key_id" uuid,
	"model" text NOT NULL,
	"skill" text NOT NULL,
	"tool" text DEFAULT '' NOT NULL,
	"cost_usd" numeric DEFAULT '0' NOT NULL,
	"tokens_in" bigint DEFAULT 0 NOT NULL,
	"tokens_out" bigint DEFAULT 0 NOT NULL,
	"calls" integer DEFAULT 0 NOT NULL,
	CONSTRAINT "cost_rollups_dims_uq" UNIQUE NULLS NOT DISTINCT("tenant_id","bucket_start","key_id","model","skill","tool")
);
--> statement-breakpoint
ALTER TABLE "cost_rollups" ADD CONSTRAINT "cost_rollups_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "cost_rollups" ADD CONSTRAINT "cost_rollups_key_id_api_keys_id_fk" FOREIGN KEY ("key_id") REFERENCES "public"."api_keys"("id") ON DELETE no action ON UPDATE no action;
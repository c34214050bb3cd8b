CREATE TABLE `sk_messages` (
	`id` text PRIMARY KEY NOT NULL,
	`uuid` text NOT NULL,
	`tenant_id` text NOT NULL,
	`livemode` integer NOT NULL,
	`channel` text NOT NULL,
	`recipient` text NOT NULL,
	`template_slug` text,
	`pinned_version` integer,
	`vars` text DEFAULT '{}' NOT NULL,
	`metadata` text DEFAULT '{}' NOT NULL,
	`from_override` text,
	`interpolate` integer DEFAULT false NOT NULL,
	`idempotency_key` text,
	`scheduled_at` integer,
	`status` text,
	`error` text,
	`timeline` text DEFAULT '[]' NOT NULL,
	`provider` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `sk_messages_uuid` ON `sk_messages` (`uuid`);--> statement-breakpoint
CREATE INDEX `sk_messages_tenant_mode_created` ON `sk_messages` (`tenant_id`,`livemode`,`created_at`,`id`);
--> statement-breakpoint
CREATE TABLE `sk_quotas` (
	`tenant_id` text PRIMARY KEY NOT NULL,
	`monthly_limit` integer NOT NULL,
	`grace_percent` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE TABLE `sk_usage` (
	`tenant_id` text NOT NULL,
	`month` text NOT NULL,
	`count` integer NOT NULL,
	PRIMARY KEY(`tenant_id`, `month`)
);

CREATE TABLE `provider_connections` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`channel` text NOT NULL,
	`provider` text NOT NULL,
	`name` text NOT NULL,
	`is_default` integer DEFAULT false NOT NULL,
	`settings` text DEFAULT '{}' NOT NULL,
	`hints` text DEFAULT '{}' NOT NULL,
	`credentials_sealed` text NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `provider_connections_tenant_name` ON `provider_connections` (`tenant_id`,`name`);--> statement-breakpoint
CREATE UNIQUE INDEX `provider_connections_default` ON `provider_connections` (`tenant_id`,`channel`) WHERE "provider_connections"."is_default" = 1;--> statement-breakpoint
ALTER TABLE `sk_templates` ADD `provider_connection_id` text REFERENCES provider_connections(id);

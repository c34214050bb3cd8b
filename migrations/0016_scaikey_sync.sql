ALTER TABLE `partners` ADD `scaikey_updated_at` integer;--> statement-breakpoint
ALTER TABLE `partners` ADD `scaikey_synced_at` integer;--> statement-breakpoint
ALTER TABLE `tenants` ADD `scaikey_updated_at` integer;--> statement-breakpoint
ALTER TABLE `tenants` ADD `scaikey_synced_at` integer;--> statement-breakpoint
ALTER TABLE `users` ADD `scaikey_updated_at` integer;--> statement-breakpoint
ALTER TABLE `users` ADD `scaikey_synced_at` integer;--> statement-breakpoint
CREATE TABLE `user_groups` (
	`tenant_id` text NOT NULL,
	`user_id` text NOT NULL,
	`group_id` text NOT NULL,
	PRIMARY KEY(`user_id`, `group_id`),
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `user_groups_tenant_group` ON `user_groups` (`tenant_id`,`group_id`);--> statement-breakpoint
CREATE TABLE `scaikey_events` (
	`id` text PRIMARY KEY NOT NULL,
	`received_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `scaikey_events_received` ON `scaikey_events` (`received_at`);--> statement-breakpoint
CREATE TABLE `scaikey_registration` (
	`id` text PRIMARY KEY NOT NULL,
	`issuer` text NOT NULL,
	`client_id` text,
	`client_secret` text,
	`redirect_uri` text,
	`webhook_id` text,
	`webhook_url` text,
	`webhook_secret` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);

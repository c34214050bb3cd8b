CREATE TABLE `partners` (
	`id` text PRIMARY KEY NOT NULL,
	`scaikey_id` text,
	`name` text NOT NULL,
	`slug` text NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `partners_slug` ON `partners` (`slug`);--> statement-breakpoint
CREATE UNIQUE INDEX `partners_scaikey_id` ON `partners` (`scaikey_id`);--> statement-breakpoint
ALTER TABLE `tenants` ADD `partner_id` text REFERENCES partners(id);--> statement-breakpoint
ALTER TABLE `tenants` ADD `scaikey_id` text;--> statement-breakpoint
ALTER TABLE `tenants` ADD `slug` text;--> statement-breakpoint
ALTER TABLE `tenants` ADD `settings` text DEFAULT '{}' NOT NULL;--> statement-breakpoint
ALTER TABLE `tenants` ADD `updated_at` integer;--> statement-breakpoint
CREATE UNIQUE INDEX `tenants_scaikey_id` ON `tenants` (`scaikey_id`);--> statement-breakpoint
CREATE INDEX `tenants_partner` ON `tenants` (`partner_id`);--> statement-breakpoint
CREATE TABLE `roles` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant_id` text,
	`name` text NOT NULL,
	`description` text,
	`is_default` integer DEFAULT false NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `roles_tenant_name` ON `roles` (`tenant_id`,`name`);--> statement-breakpoint
CREATE TABLE `role_permissions` (
	`role_id` text NOT NULL,
	`permission` text NOT NULL,
	PRIMARY KEY(`role_id`, `permission`),
	FOREIGN KEY (`role_id`) REFERENCES `roles`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `users` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`scaikey_id` text NOT NULL,
	`email` text,
	`first_name` text,
	`last_name` text,
	`display_name` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `users_tenant_scaikey` ON `users` (`tenant_id`,`scaikey_id`);--> statement-breakpoint
CREATE TABLE `user_roles` (
	`tenant_id` text NOT NULL,
	`user_id` text NOT NULL,
	`role_id` text NOT NULL,
	`created_at` integer NOT NULL,
	PRIMARY KEY(`user_id`, `role_id`),
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`role_id`) REFERENCES `roles`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `user_roles_tenant` ON `user_roles` (`tenant_id`,`user_id`);--> statement-breakpoint
CREATE TABLE `group_mappings` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`group_id` text NOT NULL,
	`role_id` text NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action,
	FOREIGN KEY (`role_id`) REFERENCES `roles`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `group_mappings_tenant_group_role` ON `group_mappings` (`tenant_id`,`group_id`,`role_id`);--> statement-breakpoint
INSERT INTO `roles` (`id`, `tenant_id`, `name`, `description`, `is_default`, `created_at`, `updated_at`) VALUES
	('role_admin', NULL, 'admin', 'Tenant operators: every permission', 1, 0, 0),
	('role_developer', NULL, 'developer', 'Application integrators', 1, 0, 0);--> statement-breakpoint
INSERT INTO `role_permissions` (`role_id`, `permission`) VALUES
	('role_admin', 'mail.send'), ('role_admin', 'mail.schedule'), ('role_admin', 'mail.cancel'),
	('role_admin', 'templates.read'), ('role_admin', 'templates.write'), ('role_admin', 'templates.delete'),
	('role_admin', 'suppressions.read'), ('role_admin', 'suppressions.write'),
	('role_admin', 'stats.read'), ('role_admin', 'stats.export'),
	('role_admin', 'webhooks.read'), ('role_admin', 'webhooks.write'),
	('role_admin', 'domains.read'), ('role_admin', 'domains.write'),
	('role_admin', 'admin.api_keys'), ('role_admin', 'admin.users'), ('role_admin', 'admin.settings'),
	('role_developer', 'mail.send'), ('role_developer', 'mail.schedule'), ('role_developer', 'templates.read'),
	('role_developer', 'stats.read'), ('role_developer', 'webhooks.read');

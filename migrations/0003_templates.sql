CREATE TABLE `template_versions` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`template_id` text NOT NULL,
	`name` text NOT NULL,
	`subject` text NOT NULL,
	`html_content` text NOT NULL,
	`plain_content` text NOT NULL,
	`generate_plain_content` integer NOT NULL,
	`preheader` text,
	`editor` text NOT NULL,
	`test_data` text,
	`active` integer NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`template_id`) REFERENCES `templates`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `template_versions_template` ON `template_versions` (`template_id`,`created_at`);--> statement-breakpoint
CREATE UNIQUE INDEX `template_versions_template_name` ON `template_versions` (`template_id`,`name`);--> statement-breakpoint
CREATE UNIQUE INDEX `template_versions_one_active` ON `template_versions` (`template_id`) WHERE active = 1;--> statement-breakpoint
CREATE TABLE `templates` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`name` text NOT NULL,
	`generation` text NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `templates_tenant_name` ON `templates` (`tenant_id`,`name`);--> statement-breakpoint
CREATE INDEX `templates_tenant_created` ON `templates` (`tenant_id`,`created_at`,`id`);
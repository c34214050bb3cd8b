CREATE TABLE `sk_templates` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`slug` text NOT NULL,
	`channel` text NOT NULL,
	`description` text,
	`current_version_id` text,
	`published_at` integer,
	`latest_version` integer DEFAULT 0 NOT NULL,
	`archived_at` integer,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `sk_templates_tenant_slug` ON `sk_templates` (`tenant_id`,`slug`);--> statement-breakpoint
CREATE TABLE `sk_template_versions` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`template_id` text NOT NULL,
	`version_number` integer NOT NULL,
	`content` text NOT NULL,
	`variables` text DEFAULT '[]' NOT NULL,
	`first_published_at` integer,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`template_id`) REFERENCES `sk_templates`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `sk_template_versions_number` ON `sk_template_versions` (`template_id`,`version_number`);--> statement-breakpoint
CREATE TRIGGER `sk_template_versions_immutable` BEFORE UPDATE OF `tenant_id`, `template_id`, `version_number`, `content`, `variables`, `created_at` ON `sk_template_versions`
BEGIN
	SELECT RAISE(ABORT, 'sk_template_versions are immutable');
END;--> statement-breakpoint
CREATE TRIGGER `sk_template_versions_no_delete` BEFORE DELETE ON `sk_template_versions`
BEGIN
	SELECT RAISE(ABORT, 'sk_template_versions are immutable');
END;

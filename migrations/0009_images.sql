CREATE TABLE `images` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`filename` text NOT NULL,
	`original_filename` text NOT NULL,
	`content_type` text NOT NULL,
	`size` integer NOT NULL,
	`width` integer NOT NULL,
	`height` integer NOT NULL,
	`sha256` text NOT NULL,
	`r2_key` text NOT NULL,
	`thumbnail_key` text,
	`alt_text` text,
	`folder` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	`deleted_at` integer,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `images_tenant_created` ON `images` (`tenant_id`,`deleted_at`,`created_at`);--> statement-breakpoint
CREATE INDEX `images_tenant_folder` ON `images` (`tenant_id`,`folder`);

CREATE TABLE `tenant_rate_limits` (
	`tenant_id` text PRIMARY KEY NOT NULL,
	`limits` text NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action
);

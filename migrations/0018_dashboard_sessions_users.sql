-- A dashboard session belongs to an operator-created login (0017) or, since OIDC sign-in through
-- ScaiKey, to a mirrored ScaiKey user: exactly one of login_id / user_id (docs/dashboard.md#sessions).
-- SQLite cannot relax a NOT NULL column in place, and nothing references this table, so it is made
-- anew: upgrading signs everyone out of the dashboard once.
DROP TABLE `dashboard_sessions`;--> statement-breakpoint
CREATE TABLE `dashboard_sessions` (
	`id_hash` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`login_id` text,
	`user_id` text,
	`csrf_token` text NOT NULL,
	`created_at` integer NOT NULL,
	`last_seen_at` integer NOT NULL,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action,
	FOREIGN KEY (`login_id`) REFERENCES `dashboard_logins`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade,
	CONSTRAINT "dashboard_sessions_one_owner" CHECK(("dashboard_sessions"."login_id" IS NULL) <> ("dashboard_sessions"."user_id" IS NULL))
);
--> statement-breakpoint
CREATE INDEX `dashboard_sessions_login` ON `dashboard_sessions` (`login_id`);--> statement-breakpoint
CREATE INDEX `dashboard_sessions_user` ON `dashboard_sessions` (`user_id`);--> statement-breakpoint
CREATE INDEX `dashboard_sessions_last_seen` ON `dashboard_sessions` (`last_seen_at`);--> statement-breakpoint
CREATE INDEX `dashboard_sessions_created` ON `dashboard_sessions` (`created_at`);

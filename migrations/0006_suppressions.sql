CREATE TABLE `suppressions` (
	`tenant_id` text NOT NULL,
	`email` text NOT NULL,
	`list` text NOT NULL,
	`created_at` integer NOT NULL,
	`reason` text,
	`status` text,
	`bounce_type` text,
	`ip` text,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `suppressions_pk` ON `suppressions` (`tenant_id`,`email`,`list`);--> statement-breakpoint
CREATE INDEX `suppressions_tenant_list_created` ON `suppressions` (`tenant_id`,`list`,`created_at`);--> statement-breakpoint
CREATE TABLE `asm_groups` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`tenant_id` text NOT NULL,
	`name` text NOT NULL,
	`description` text DEFAULT '' NOT NULL,
	`is_default` integer DEFAULT false NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `asm_groups_tenant_name` ON `asm_groups` (`tenant_id`,`name`);--> statement-breakpoint
CREATE TABLE `asm_group_suppressions` (
	`tenant_id` text NOT NULL,
	`group_id` integer NOT NULL,
	`email` text NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`group_id`) REFERENCES `asm_groups`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `asm_group_suppressions_pk` ON `asm_group_suppressions` (`tenant_id`,`email`,`group_id`);--> statement-breakpoint
CREATE INDEX `asm_group_suppressions_group_created` ON `asm_group_suppressions` (`group_id`,`created_at`);--> statement-breakpoint
CREATE TRIGGER `events_suppress_bounce` AFTER INSERT ON `events`
WHEN NEW.`event_type` = 'bounce' AND coalesce(json_extract(NEW.`metadata`, '$.bounce_type'), 'hard') IN ('hard', 'block')
BEGIN
	INSERT INTO `suppressions` (`tenant_id`, `email`, `list`, `created_at`, `reason`, `status`, `bounce_type`)
	VALUES (NEW.`tenant_id`, lower(NEW.`recipient_email`),
		iif(json_extract(NEW.`metadata`, '$.bounce_type') = 'block', 'blocks', 'bounces'),
		NEW.`timestamp`,
		coalesce(nullif(json_extract(NEW.`metadata`, '$.reason'), ''), json_extract(NEW.`metadata`, '$.smtp_response'), ''),
		coalesce(json_extract(NEW.`metadata`, '$.status'), ''),
		coalesce(json_extract(NEW.`metadata`, '$.bounce_type'), 'hard'))
	ON CONFLICT (`tenant_id`, `email`, `list`) DO UPDATE SET `created_at` = excluded.`created_at`,
		`reason` = excluded.`reason`, `status` = excluded.`status`, `bounce_type` = excluded.`bounce_type`
	WHERE excluded.`created_at` >= `suppressions`.`created_at`;
END;
--> statement-breakpoint
CREATE TRIGGER `events_suppress_blocked` AFTER INSERT ON `events`
WHEN NEW.`event_type` = 'blocked'
BEGIN
	INSERT INTO `suppressions` (`tenant_id`, `email`, `list`, `created_at`, `reason`, `status`, `bounce_type`)
	VALUES (NEW.`tenant_id`, lower(NEW.`recipient_email`), 'blocks', NEW.`timestamp`,
		coalesce(nullif(json_extract(NEW.`metadata`, '$.reason'), ''), json_extract(NEW.`metadata`, '$.smtp_response'), ''),
		coalesce(json_extract(NEW.`metadata`, '$.status'), ''), 'block')
	ON CONFLICT (`tenant_id`, `email`, `list`) DO UPDATE SET `created_at` = excluded.`created_at`,
		`reason` = excluded.`reason`, `status` = excluded.`status`
	WHERE excluded.`created_at` >= `suppressions`.`created_at`;
END;
--> statement-breakpoint
CREATE TRIGGER `events_suppress_spam_report` AFTER INSERT ON `events`
WHEN NEW.`event_type` = 'spam_report'
BEGIN
	INSERT INTO `suppressions` (`tenant_id`, `email`, `list`, `created_at`, `ip`)
	VALUES (NEW.`tenant_id`, lower(NEW.`recipient_email`), 'spam_reports', NEW.`timestamp`, json_extract(NEW.`metadata`, '$.ip'))
	ON CONFLICT (`tenant_id`, `email`, `list`) DO NOTHING;
END;
--> statement-breakpoint
CREATE TRIGGER `events_suppress_unsubscribe` AFTER INSERT ON `events`
WHEN NEW.`event_type` = 'unsubscribe'
BEGIN
	INSERT INTO `suppressions` (`tenant_id`, `email`, `list`, `created_at`)
	VALUES (NEW.`tenant_id`, lower(NEW.`recipient_email`), 'unsubscribes', NEW.`timestamp`)
	ON CONFLICT (`tenant_id`, `email`, `list`) DO NOTHING;
END;
--> statement-breakpoint
CREATE TRIGGER `events_suppress_group_unsubscribe` AFTER INSERT ON `events`
WHEN NEW.`event_type` = 'group_unsubscribe'
BEGIN
	INSERT INTO `asm_group_suppressions` (`tenant_id`, `group_id`, `email`, `created_at`)
	SELECT `tenant_id`, `id`, lower(NEW.`recipient_email`), NEW.`timestamp` FROM `asm_groups`
	WHERE `tenant_id` = NEW.`tenant_id` AND `id` = CAST(json_extract(NEW.`metadata`, '$.asm_group_id') AS INTEGER)
	ON CONFLICT (`tenant_id`, `email`, `group_id`) DO NOTHING;
END;
--> statement-breakpoint
CREATE TRIGGER `events_suppress_group_resubscribe` AFTER INSERT ON `events`
WHEN NEW.`event_type` = 'group_resubscribe'
BEGIN
	DELETE FROM `asm_group_suppressions` WHERE `tenant_id` = NEW.`tenant_id` AND `email` = lower(NEW.`recipient_email`)
		AND `group_id` = CAST(json_extract(NEW.`metadata`, '$.asm_group_id') AS INTEGER);
END;

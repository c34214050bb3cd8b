CREATE TABLE `api_keys` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`name` text NOT NULL,
	`prefix` text NOT NULL,
	`key_hash` text NOT NULL,
	`environment` text NOT NULL,
	`scopes` text NOT NULL,
	`created_at` integer NOT NULL,
	`last_used_at` integer,
	`expires_at` integer,
	`revoked_at` integer,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `api_keys_key_hash` ON `api_keys` (`key_hash`);--> statement-breakpoint
CREATE INDEX `api_keys_tenant` ON `api_keys` (`tenant_id`);--> statement-breakpoint
CREATE TABLE `events` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`message_id` text NOT NULL,
	`event_type` text NOT NULL,
	`recipient_email` text NOT NULL,
	`timestamp` integer NOT NULL,
	`attempt` integer DEFAULT 0 NOT NULL,
	`metadata` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `events_message` ON `events` (`message_id`,`timestamp`);--> statement-breakpoint
CREATE INDEX `events_tenant_time` ON `events` (`tenant_id`,`timestamp`);--> statement-breakpoint
CREATE UNIQUE INDEX `events_dedupe` ON `events` (`message_id`,`attempt`,`recipient_email`,`event_type`) WHERE attempt > 0;--> statement-breakpoint
CREATE TABLE `message_recipients` (
	`message_id` text NOT NULL,
	`tenant_id` text NOT NULL,
	`email` text NOT NULL,
	`kind` text NOT NULL,
	`status` text DEFAULT 'pending' NOT NULL,
	FOREIGN KEY (`message_id`) REFERENCES `messages`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `message_recipients_pk` ON `message_recipients` (`message_id`,`email`);--> statement-breakpoint
CREATE INDEX `message_recipients_tenant_email` ON `message_recipients` (`tenant_id`,`email`);--> statement-breakpoint
CREATE TABLE `messages` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`status` text NOT NULL,
	`mode` text NOT NULL,
	`api_key_id` text,
	`from_email` text NOT NULL,
	`from_name` text,
	`subject` text NOT NULL,
	`to_emails` text NOT NULL,
	`recipients` text NOT NULL,
	`headers` text NOT NULL,
	`categories` text NOT NULL,
	`custom_args` text NOT NULL,
	`text_body` text,
	`html_body` text,
	`template_id` text,
	`batch_id` text,
	`message_id_header` text NOT NULL,
	`attempts` integer DEFAULT 0 NOT NULL,
	`next_attempt_at` integer,
	`error_message` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	`delivered_at` integer,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `messages_tenant_created` ON `messages` (`tenant_id`,`created_at`);--> statement-breakpoint
CREATE INDEX `messages_tenant_status` ON `messages` (`tenant_id`,`status`,`created_at`);--> statement-breakpoint
CREATE INDEX `messages_tenant_from` ON `messages` (`tenant_id`,`from_email`);--> statement-breakpoint
CREATE TABLE `sender_domains` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`domain` text NOT NULL,
	`dkim_selector` text NOT NULL,
	`dkim_public_key` text NOT NULL,
	`dkim_private_key_enc` text NOT NULL,
	`dmarc_policy` text DEFAULT 'none' NOT NULL,
	`dmarc_rua_email` text,
	`verified` integer DEFAULT false NOT NULL,
	`is_active` integer DEFAULT true NOT NULL,
	`verified_at` integer,
	`last_checked_at` integer,
	`last_errors` text,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `sender_domains_tenant_domain` ON `sender_domains` (`tenant_id`,`domain`);--> statement-breakpoint
CREATE TABLE `tenants` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`status` text DEFAULT 'active' NOT NULL,
	`created_at` integer NOT NULL
);

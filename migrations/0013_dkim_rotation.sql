ALTER TABLE `sender_domains` ADD `dkim_next_selector` text;--> statement-breakpoint
ALTER TABLE `sender_domains` ADD `dkim_next_public_key` text;--> statement-breakpoint
ALTER TABLE `sender_domains` ADD `dkim_next_private_key_enc` text;--> statement-breakpoint
ALTER TABLE `sender_domains` ADD `dkim_next_created_at` integer;--> statement-breakpoint
ALTER TABLE `sender_domains` ADD `dkim_retired_keys` text;

ALTER TABLE `sender_domains` ADD `dkim_ed25519_selector` text;--> statement-breakpoint
ALTER TABLE `sender_domains` ADD `dkim_ed25519_public_key` text;--> statement-breakpoint
ALTER TABLE `sender_domains` ADD `dkim_ed25519_private_key_enc` text;--> statement-breakpoint
ALTER TABLE `sender_domains` ADD `dkim_ed25519_verified_at` integer;
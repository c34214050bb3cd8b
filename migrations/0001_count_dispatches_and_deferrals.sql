ALTER TABLE `messages` RENAME COLUMN "attempts" TO "dispatches";--> statement-breakpoint
ALTER TABLE `messages` ADD `deferrals` integer DEFAULT 0 NOT NULL;
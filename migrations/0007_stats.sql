CREATE TABLE `stats_daily` (
	`tenant_id` text NOT NULL,
	`category` text NOT NULL,
	`day` text NOT NULL,
	`metric` text NOT NULL,
	`count` integer DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `stats_daily_pk` ON `stats_daily` (`tenant_id`,`category`,`day`,`metric`);--> statement-breakpoint
CREATE VIEW `events_stats_metrics` AS
SELECT `event_rowid`, `tenant_id`, `message_id`, `timestamp`, `day`, `metric` FROM (
	SELECT e.`rowid` AS `event_rowid`, e.`tenant_id`, e.`message_id`, e.`timestamp`,
		date(e.`timestamp` / 1000, 'unixepoch') AS `day`,
		CASE n.`k` WHEN 1 THEN CASE e.`event_type`
			WHEN 'processed' THEN 'processed'
			WHEN 'delivered' THEN 'delivered'
			WHEN 'deferred' THEN 'deferred'
			WHEN 'bounce' THEN 'bounces'
			WHEN 'blocked' THEN 'bounces'
			WHEN 'open' THEN 'opens'
			WHEN 'click' THEN 'clicks'
			WHEN 'spam_report' THEN 'spam_reports'
			WHEN 'unsubscribe' THEN 'unsubscribes'
			WHEN 'group_unsubscribe' THEN 'unsubscribes'
			WHEN 'dropped' THEN CASE json_extract(e.`metadata`, '$.reason')
				WHEN 'Bounced Address' THEN 'bounce_drops'
				WHEN 'Spam Reporting Address' THEN 'spam_report_drops'
				WHEN 'Unsubscribed Address' THEN 'unsubscribe_drops'
				WHEN 'Invalid' THEN 'invalid_emails'
			END
		END
		ELSE CASE
			WHEN e.`event_type` = 'blocked'
				OR (e.`event_type` = 'bounce' AND json_extract(e.`metadata`, '$.bounce_type') = 'block') THEN 'blocks'
			WHEN (e.`event_type` = 'click' OR (e.`event_type` = 'open' AND json_extract(e.`metadata`, '$.machine_open') IS NOT 1))
				AND NOT EXISTS (SELECT 1 FROM `events` p
					WHERE p.`message_id` = e.`message_id` AND +p.`tenant_id` = e.`tenant_id`
					AND p.`recipient_email` = e.`recipient_email` AND p.`event_type` = e.`event_type`
					AND p.`rowid` < e.`rowid`
					AND (p.`event_type` = 'click' OR json_extract(p.`metadata`, '$.machine_open') IS NOT 1))
				THEN iif(e.`event_type` = 'open', 'unique_opens', 'unique_clicks')
		END END AS `metric`
	FROM `events` e, (SELECT 1 AS `k` UNION ALL SELECT 2) n
)
WHERE `metric` IS NOT NULL;
--> statement-breakpoint
CREATE TRIGGER `events_stats_count` AFTER INSERT ON `events`
BEGIN
	INSERT INTO `stats_daily` (`tenant_id`, `category`, `day`, `metric`, `count`)
	SELECT NEW.`tenant_id`, '', date(NEW.`timestamp` / 1000, 'unixepoch'), x.`m`, 1
	FROM (SELECT CASE NEW.`event_type`
		WHEN 'processed' THEN 'processed'
		WHEN 'delivered' THEN 'delivered'
		WHEN 'deferred' THEN 'deferred'
		WHEN 'bounce' THEN 'bounces'
		WHEN 'blocked' THEN 'bounces'
		WHEN 'open' THEN 'opens'
		WHEN 'click' THEN 'clicks'
		WHEN 'spam_report' THEN 'spam_reports'
		WHEN 'unsubscribe' THEN 'unsubscribes'
		WHEN 'group_unsubscribe' THEN 'unsubscribes'
		WHEN 'dropped' THEN CASE json_extract(NEW.`metadata`, '$.reason')
			WHEN 'Bounced Address' THEN 'bounce_drops'
			WHEN 'Spam Reporting Address' THEN 'spam_report_drops'
			WHEN 'Unsubscribed Address' THEN 'unsubscribe_drops'
			WHEN 'Invalid' THEN 'invalid_emails'
		END
	END AS `m`) x
	WHERE x.`m` IS NOT NULL
	ON CONFLICT (`tenant_id`, `category`, `day`, `metric`) DO UPDATE SET `count` = `count` + 1;
	INSERT INTO `stats_daily` (`tenant_id`, `category`, `day`, `metric`, `count`)
	SELECT NEW.`tenant_id`, j.`value`, date(NEW.`timestamp` / 1000, 'unixepoch'), x.`m`, 1
	FROM (SELECT CASE NEW.`event_type`
		WHEN 'processed' THEN 'processed'
		WHEN 'delivered' THEN 'delivered'
		WHEN 'deferred' THEN 'deferred'
		WHEN 'bounce' THEN 'bounces'
		WHEN 'blocked' THEN 'bounces'
		WHEN 'open' THEN 'opens'
		WHEN 'click' THEN 'clicks'
		WHEN 'spam_report' THEN 'spam_reports'
		WHEN 'unsubscribe' THEN 'unsubscribes'
		WHEN 'group_unsubscribe' THEN 'unsubscribes'
		WHEN 'dropped' THEN CASE json_extract(NEW.`metadata`, '$.reason')
			WHEN 'Bounced Address' THEN 'bounce_drops'
			WHEN 'Spam Reporting Address' THEN 'spam_report_drops'
			WHEN 'Unsubscribed Address' THEN 'unsubscribe_drops'
			WHEN 'Invalid' THEN 'invalid_emails'
		END
	END AS `m`) x, json_each((SELECT ms.`categories` FROM `messages` ms WHERE ms.`id` = NEW.`message_id` AND +ms.`tenant_id` = NEW.`tenant_id`)) j
	WHERE x.`m` IS NOT NULL AND j.`type` = 'text'
		AND NOT EXISTS (SELECT 1 FROM json_each((SELECT ms.`categories` FROM `messages` ms WHERE ms.`id` = NEW.`message_id` AND +ms.`tenant_id` = NEW.`tenant_id`)) k WHERE k.`key` < j.`key` AND k.`value` = j.`value`)
	ON CONFLICT (`tenant_id`, `category`, `day`, `metric`) DO UPDATE SET `count` = `count` + 1;
	INSERT INTO `stats_daily` (`tenant_id`, `category`, `day`, `metric`, `count`)
	SELECT NEW.`tenant_id`, '', date(NEW.`timestamp` / 1000, 'unixepoch'), x.`m`, 1
	FROM (SELECT CASE
		WHEN NEW.`event_type` = 'blocked'
			OR (NEW.`event_type` = 'bounce' AND json_extract(NEW.`metadata`, '$.bounce_type') = 'block') THEN 'blocks'
		WHEN (NEW.`event_type` = 'click' OR (NEW.`event_type` = 'open' AND json_extract(NEW.`metadata`, '$.machine_open') IS NOT 1))
			AND NOT EXISTS (SELECT 1 FROM `events` p
				WHERE p.`message_id` = NEW.`message_id` AND +p.`tenant_id` = NEW.`tenant_id`
				AND p.`recipient_email` = NEW.`recipient_email` AND p.`event_type` = NEW.`event_type`
				AND p.`rowid` < NEW.`rowid`
				AND (p.`event_type` = 'click' OR json_extract(p.`metadata`, '$.machine_open') IS NOT 1))
			THEN iif(NEW.`event_type` = 'open', 'unique_opens', 'unique_clicks')
	END AS `m`) x
	WHERE x.`m` IS NOT NULL
	ON CONFLICT (`tenant_id`, `category`, `day`, `metric`) DO UPDATE SET `count` = `count` + 1;
	INSERT INTO `stats_daily` (`tenant_id`, `category`, `day`, `metric`, `count`)
	SELECT NEW.`tenant_id`, j.`value`, date(NEW.`timestamp` / 1000, 'unixepoch'), x.`m`, 1
	FROM (SELECT CASE
		WHEN NEW.`event_type` = 'blocked'
			OR (NEW.`event_type` = 'bounce' AND json_extract(NEW.`metadata`, '$.bounce_type') = 'block') THEN 'blocks'
		WHEN (NEW.`event_type` = 'click' OR (NEW.`event_type` = 'open' AND json_extract(NEW.`metadata`, '$.machine_open') IS NOT 1))
			AND NOT EXISTS (SELECT 1 FROM `events` p
				WHERE p.`message_id` = NEW.`message_id` AND +p.`tenant_id` = NEW.`tenant_id`
				AND p.`recipient_email` = NEW.`recipient_email` AND p.`event_type` = NEW.`event_type`
				AND p.`rowid` < NEW.`rowid`
				AND (p.`event_type` = 'click' OR json_extract(p.`metadata`, '$.machine_open') IS NOT 1))
			THEN iif(NEW.`event_type` = 'open', 'unique_opens', 'unique_clicks')
	END AS `m`) x, json_each((SELECT ms.`categories` FROM `messages` ms WHERE ms.`id` = NEW.`message_id` AND +ms.`tenant_id` = NEW.`tenant_id`)) j
	WHERE x.`m` IS NOT NULL AND j.`type` = 'text'
		AND NOT EXISTS (SELECT 1 FROM json_each((SELECT ms.`categories` FROM `messages` ms WHERE ms.`id` = NEW.`message_id` AND +ms.`tenant_id` = NEW.`tenant_id`)) k WHERE k.`key` < j.`key` AND k.`value` = j.`value`)
	ON CONFLICT (`tenant_id`, `category`, `day`, `metric`) DO UPDATE SET `count` = `count` + 1;
END;
--> statement-breakpoint
CREATE TRIGGER `events_stats_requests` AFTER INSERT ON `messages`
WHEN NEW.`mode` = 'live'
BEGIN
	INSERT INTO `stats_daily` (`tenant_id`, `category`, `day`, `metric`, `count`)
	VALUES (NEW.`tenant_id`, '', date(NEW.`created_at` / 1000, 'unixepoch'), 'requests', 1)
	ON CONFLICT (`tenant_id`, `category`, `day`, `metric`) DO UPDATE SET `count` = `count` + 1;
	INSERT INTO `stats_daily` (`tenant_id`, `category`, `day`, `metric`, `count`)
	SELECT NEW.`tenant_id`, j.`value`, date(NEW.`created_at` / 1000, 'unixepoch'), 'requests', 1
	FROM json_each(NEW.`categories`) j
	WHERE j.`type` = 'text'
		AND NOT EXISTS (SELECT 1 FROM json_each(NEW.`categories`) k WHERE k.`key` < j.`key` AND k.`value` = j.`value`)
	ON CONFLICT (`tenant_id`, `category`, `day`, `metric`) DO UPDATE SET `count` = `count` + 1;
END;

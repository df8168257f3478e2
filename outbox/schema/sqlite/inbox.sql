-- The inbox of package github.com/uowkit/uowkit/outbox (consumers), for
-- SQLite. Copy it into your migrations; to use another table name, replace
-- every "uowkit_inbox" (outbox.InboxSchema does it for you).

CREATE TABLE IF NOT EXISTS uowkit_inbox (
	message_id  TEXT    PRIMARY KEY,
	received_at INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER))
);

-- The inbox of package github.com/uowkit/uowkit/outbox (consumers), for
-- PostgreSQL. Copy it into your migrations; to use another table name,
-- replace every "uowkit_inbox" (outbox.InboxSchema does it for you).

-- One row per message a consumer applied, written in the same transaction
-- as the consumer's own changes.
CREATE TABLE IF NOT EXISTS uowkit_inbox (
	message_id  text        PRIMARY KEY,
	received_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

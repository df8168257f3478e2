-- The transactional outbox of package github.com/uowkit/uowkit/outbox, for
-- PostgreSQL 11 or later. Copy it into your migrations; to use another table
-- name, replace every "uowkit_outbox" (outbox.Schema does it for you).

-- One row per recorded message. id is taken while the writer holds its key's
-- row in uowkit_outbox_keys (see Record), so for one key id order is commit
-- order. delivered_at stays NULL until a relay's publisher acknowledged the
-- message.
CREATE TABLE IF NOT EXISTS uowkit_outbox (
	id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	message_id   text        NOT NULL UNIQUE,
	subject      text        NOT NULL,
	key          text        NOT NULL DEFAULT '',
	key_seq      bigint      NOT NULL DEFAULT 0,
	payload      bytea       NOT NULL,
	headers      text,
	recorded_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
	delivered_at timestamptz,
	attempts     integer     NOT NULL DEFAULT 0,
	last_error   text
);

-- What a relay reads: the undelivered rows in id order.
CREATE INDEX IF NOT EXISTS uowkit_outbox_undelivered ON uowkit_outbox (id) WHERE delivered_at IS NULL;

-- What the purge reads: delivered rows by age.
CREATE INDEX IF NOT EXISTS uowkit_outbox_delivered ON uowkit_outbox (delivered_at) WHERE delivered_at IS NOT NULL;

-- One row per ordering key: its row lock serialises the writers of one key
-- until they commit, and seq numbers the key's messages in commit order.
CREATE TABLE IF NOT EXISTS uowkit_outbox_keys (
	key text   PRIMARY KEY,
	seq bigint NOT NULL
);

-- The relays' lease: only the holder publishes, until expires_at (the
-- database's clock).
CREATE TABLE IF NOT EXISTS uowkit_outbox_lease (
	name       text        PRIMARY KEY,
	holder     text        NOT NULL,
	expires_at timestamptz NOT NULL
);

-- Wakes a listening relay when a transaction that recorded messages commits
-- (notifications are delivered at commit, and one per transaction).
CREATE OR REPLACE FUNCTION uowkit_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('uowkit_outbox', '');
	RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS uowkit_outbox_notify ON uowkit_outbox;
CREATE TRIGGER uowkit_outbox_notify AFTER INSERT ON uowkit_outbox
	FOR EACH STATEMENT EXECUTE FUNCTION uowkit_outbox_notify();

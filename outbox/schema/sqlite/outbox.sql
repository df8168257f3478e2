-- The transactional outbox of package github.com/uowkit/uowkit/outbox, for
-- SQLite 3.35 or later. Copy it into your migrations; to use another table
-- name, replace every "uowkit_outbox" (outbox.Schema does it for you).
-- Times are microseconds since the Unix epoch (UTC).

-- One row per recorded message. SQLite has one writer at a time, so id order
-- is commit order. AUTOINCREMENT: an id is never reused after a purge.
CREATE TABLE IF NOT EXISTS uowkit_outbox (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	message_id   TEXT    NOT NULL UNIQUE,
	subject      TEXT    NOT NULL,
	key          TEXT    NOT NULL DEFAULT '',
	key_seq      INTEGER NOT NULL DEFAULT 0,
	payload      BLOB    NOT NULL,
	headers      TEXT,
	recorded_at  INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)),
	delivered_at INTEGER,
	attempts     INTEGER NOT NULL DEFAULT 0,
	last_error   TEXT
);

CREATE INDEX IF NOT EXISTS uowkit_outbox_undelivered ON uowkit_outbox (id) WHERE delivered_at IS NULL;

CREATE INDEX IF NOT EXISTS uowkit_outbox_delivered ON uowkit_outbox (delivered_at) WHERE delivered_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS uowkit_outbox_keys (
	key TEXT    PRIMARY KEY,
	seq INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS uowkit_outbox_lease (
	name       TEXT    PRIMARY KEY,
	holder     TEXT    NOT NULL,
	expires_at INTEGER NOT NULL
);

-- Events are recorded in the transactional outbox (uowkit_outbox, made by
-- the outbox's own migration) instead of a table of the service's own.
DROP TABLE events;

-- The query side's read model, maintained by the projector from the
-- events (package projection): nothing on the command side reads or
-- writes these tables.
CREATE TABLE team_view (
	team_id  INTEGER PRIMARY KEY,
	name     TEXT    NOT NULL,
	capacity INTEGER NOT NULL
);
CREATE TABLE roster_view (
	player_id INTEGER PRIMARY KEY,
	team_id   INTEGER NOT NULL REFERENCES team_view (team_id),
	name      TEXT   NOT NULL
);
CREATE INDEX roster_view_team ON roster_view (team_id, player_id);
-- One row per join, and two per move (one in each team's history).
CREATE TABLE team_history (
	team_id      INTEGER NOT NULL REFERENCES team_view (team_id),
	event_id     TEXT   NOT NULL,
	type         TEXT   NOT NULL,
	player_id    INTEGER NOT NULL,
	player_name  TEXT   NOT NULL,
	from_team_id INTEGER,
	to_team_id   INTEGER NOT NULL,
	occurred_at  INTEGER NOT NULL, -- microseconds since the Unix epoch
	PRIMARY KEY (team_id, event_id)
);
-- How far the projection has got: the newest recording time (the outbox's
-- recorded_at, microseconds since the epoch) of the events it applied.
CREATE TABLE projection_position (
	name        TEXT   PRIMARY KEY,
	recorded_at INTEGER NOT NULL
);

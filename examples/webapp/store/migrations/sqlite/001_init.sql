CREATE TABLE teams (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	name     TEXT    NOT NULL,
	capacity INTEGER NOT NULL CHECK (capacity > 0)
);
CREATE TABLE players (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	name    TEXT    NOT NULL,
	team_id INTEGER NOT NULL REFERENCES teams (id)
);
CREATE INDEX players_team_id ON players (team_id);
CREATE TABLE team_rosters (
	team_id      INTEGER PRIMARY KEY REFERENCES teams (id),
	player_count INTEGER NOT NULL DEFAULT 0 CHECK (player_count >= 0)
);
CREATE TABLE events (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	type       TEXT     NOT NULL,
	payload    TEXT     NOT NULL,
	created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);

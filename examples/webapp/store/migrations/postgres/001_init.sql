CREATE TABLE teams (
	id       bigserial PRIMARY KEY,
	name     text NOT NULL,
	capacity int  NOT NULL CHECK (capacity > 0)
);
CREATE TABLE players (
	id      bigserial PRIMARY KEY,
	name    text   NOT NULL,
	team_id bigint NOT NULL REFERENCES teams (id)
);
CREATE INDEX players_team_id ON players (team_id);
-- Read-side projection, updated in the same transaction as players.
CREATE TABLE team_rosters (
	team_id      bigint PRIMARY KEY REFERENCES teams (id),
	player_count int    NOT NULL DEFAULT 0 CHECK (player_count >= 0)
);
CREATE TABLE events (
	id         bigserial PRIMARY KEY,
	type       text        NOT NULL,
	payload    text        NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);

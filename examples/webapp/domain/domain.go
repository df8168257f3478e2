package domain

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Team is a team with a limited number of places.
type Team struct {
	ID       int64
	Name     string
	Capacity int
}

// Player belongs to one team.
type Player struct {
	ID     int64
	Name   string
	TeamID int64
}

// Roster is a team with its players: the read model of GET /teams/{id}.
type Roster struct {
	Team
	Players []Player
}

// MaxCapacity bounds a team's size.
const MaxCapacity = 1000

// MaxName bounds a name's length, in characters.
const MaxName = 100

// NewTeam validates a team before it is created.
func NewTeam(name string, capacity int) (Team, error) {
	name, err := cleanName("team", name)
	if err != nil {
		return Team{}, err
	}
	if capacity < 1 || capacity > MaxCapacity {
		return Team{}, Errorf(Invalid, "capacity must be between 1 and %d", MaxCapacity)
	}
	return Team{Name: name, Capacity: capacity}, nil
}

// NewPlayer validates a player joining team.
func NewPlayer(name string, team int64) (Player, error) {
	name, err := cleanName("player", name)
	if err != nil {
		return Player{}, err
	}
	return Player{Name: name, TeamID: team}, nil
}

// cleanName trims a name and checks it: not empty, valid UTF-8, no control
// characters (NUL, newlines, escapes: PostgreSQL refuses NUL in text, and
// none of them belongs in a name), at most MaxName characters.
func cleanName(what, name string) (string, error) {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return "", Errorf(Invalid, "%s name is required", what)
	case !utf8.ValidString(name):
		return "", Errorf(Invalid, "%s name is not valid UTF-8", what)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return "", Errorf(Invalid, "%s name contains a control character", what)
	case utf8.RuneCountInString(name) > MaxName:
		return "", Errorf(Invalid, "%s name is longer than %d characters", what, MaxName)
	}
	return name, nil
}

// Admit checks that the team, which has taken players already, has a free
// place.
func (t Team) Admit(taken int) error {
	if taken >= t.Capacity {
		return Errorf(Conflict, "team %d is full", t.ID)
	}
	return nil
}

// MoveTo returns the player moved to team to, which has taken players
// already. A player already on to stays where it is, whether or not the team
// is full: moving is idempotent. Otherwise to must have a free place
// (Conflict).
func (p Player) MoveTo(to Team, taken int) (Player, error) {
	if p.TeamID == to.ID {
		return p, nil
	}
	if err := to.Admit(taken); err != nil {
		return p, err
	}
	p.TeamID = to.ID
	return p, nil
}

// Event is something that happened, recorded with the change that caused
// it (in the transactional outbox) and published once that change has
// committed. Its wire form, the service's public contract, is package
// events'.
type Event struct {
	// ID identifies the event: the outbox message's id, the stream's
	// Nats-Msg-Id, and the consistency token a command answers with.
	ID   string
	Type string
	// TeamID is the team the event is about: the created team, the team
	// joined, the team moved to.
	TeamID int64
	// PlayerID and PlayerName: the player who joined or moved (zero for
	// TeamCreated).
	PlayerID   int64
	PlayerName string
	// TeamName and Capacity: the created team's (TeamCreated only).
	TeamName string
	Capacity int
	// FromTeamID and ToTeamID: a move's teams (PlayerMoved only).
	FromTeamID, ToTeamID int64
	// OccurredAt is when the command ran, by the service's clock.
	OccurredAt time.Time
}

// Event types: the last element of the events' subjects.
const (
	TeamCreated  = "team_created"
	PlayerJoined = "player_joined"
	PlayerMoved  = "player_moved"
)

// HistoryEntry is one join or move in a team's history (the read model of
// GET /teams/{id}/history). A move appears in the history of both teams.
type HistoryEntry struct {
	EventID    string
	Type       string // PlayerJoined or PlayerMoved
	PlayerID   int64
	PlayerName string
	FromTeamID int64 // a move's; 0 for a join
	ToTeamID   int64
	OccurredAt time.Time
}

// Code classifies an application error.
type Code string

// Error codes, mapped to HTTP statuses in one place (package httpapi).
const (
	Invalid  Code = "invalid"
	NotFound Code = "not-found"
	Conflict Code = "conflict"
	// Unavailable: the answer cannot be given yet (the projection has not
	// applied the write a read asked to see); try again later.
	Unavailable Code = "unavailable"
	Internal    Code = "internal"
)

// Error is an application error: a code and a message fit for the client.
type Error struct {
	Code    Code
	Message string
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns err's code; Internal for anything that is not an *Error.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

package events

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/uowkit/uowkit/examples/webapp/domain"
)

// The contract's names.
const (
	// Stream is the JetStream stream the service publishes its events to
	// (and creates if absent).
	Stream = "WEBAPP"
	// SubjectPrefix starts every event's subject: SubjectPrefix + type.
	SubjectPrefix = "webapp.events."
	// Subjects is what the stream captures.
	Subjects = SubjectPrefix + ">"
)

// Subject returns the subject of events of type typ, such as
// webapp.events.player_joined.
func Subject(typ string) string { return SubjectPrefix + typ }

// Body is an event's JSON body. Every event has id, type, team_id and
// occurred_at; player events have player_id (and player_name); a creation
// has name and capacity; a move has from_team_id and to_team_id (team_id
// is then the team moved to). Consumers must ignore fields they do not
// know: fields may be added, never renamed or removed.
type Body struct {
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	TeamID     int64     `json:"team_id"`
	PlayerID   int64     `json:"player_id,omitempty"`
	PlayerName string    `json:"player_name,omitempty"`
	Name       string    `json:"name,omitempty"`
	Capacity   int       `json:"capacity,omitempty"`
	FromTeamID int64     `json:"from_team_id,omitempty"`
	ToTeamID   int64     `json:"to_team_id,omitempty"`
	OccurredAt time.Time `json:"occurred_at"`
}

// Encode returns e's subject and body.
func Encode(e domain.Event) (subject string, body []byte, err error) {
	b, err := json.Marshal(Body{
		ID: e.ID, Type: e.Type, TeamID: e.TeamID, PlayerID: e.PlayerID, PlayerName: e.PlayerName,
		Name: e.TeamName, Capacity: e.Capacity, FromTeamID: e.FromTeamID, ToTeamID: e.ToTeamID,
		OccurredAt: e.OccurredAt.UTC(),
	})
	if err != nil {
		return "", nil, fmt.Errorf("events: encode %s: %w", e.ID, err)
	}
	return Subject(e.Type), b, nil
}

// Decode reads an event from its subject and body. The body's type must
// match the subject's.
func Decode(subject string, body []byte) (domain.Event, error) {
	var b Body
	if err := json.Unmarshal(body, &b); err != nil {
		return domain.Event{}, fmt.Errorf("events: decode %s: %w", subject, err)
	}
	if typ, ok := strings.CutPrefix(subject, SubjectPrefix); ok && typ != b.Type {
		return domain.Event{}, fmt.Errorf("events: decode: type %q on subject %s", b.Type, subject)
	}
	return domain.Event{
		ID: b.ID, Type: b.Type, TeamID: b.TeamID, PlayerID: b.PlayerID, PlayerName: b.PlayerName,
		TeamName: b.Name, Capacity: b.Capacity, FromTeamID: b.FromTeamID, ToTeamID: b.ToTeamID,
		OccurredAt: b.OccurredAt,
	}, nil
}

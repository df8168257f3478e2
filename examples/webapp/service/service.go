package service

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/uowkit/uowkit/examples/webapp/domain"
	"github.com/uowkit/uowkit/uow"
)

// TeamRepository stores teams.
type TeamRepository interface {
	Create(ctx context.Context, t domain.Team) (domain.Team, error)
	// Lock returns the team and locks it until the unit ends, so that
	// capacity checks on it are serialised. domain.NotFound if absent.
	Lock(ctx context.Context, id int64) (domain.Team, error)
}

// PlayerRepository stores players.
type PlayerRepository interface {
	Create(ctx context.Context, p domain.Player) (domain.Player, error)
	// Lock returns the player and locks it until the unit ends.
	Lock(ctx context.Context, id int64) (domain.Player, error)
	SetTeam(ctx context.Context, player, team int64) error
}

// RosterRepository maintains the team_rosters projection (players per team),
// updated in the same transaction as the change.
type RosterRepository interface {
	Init(ctx context.Context, team int64) error
	Count(ctx context.Context, team int64) (int, error)
	Add(ctx context.Context, team int64, delta int) error
}

// EventRepository appends domain events in the same transaction.
type EventRepository interface {
	Append(ctx context.Context, e domain.Event) (domain.Event, error)
}

// Repos is what one unit of work hands a command.
type Repos struct {
	Teams   TeamRepository
	Players PlayerRepository
	Rosters RosterRepository
	Events  EventRepository
}

// Queries is the read side.
type Queries interface {
	// Roster returns a team and its players. domain.NotFound if absent.
	Roster(ctx context.Context, id int64) (domain.Roster, error)
}

// Publisher delivers committed events to subscribers.
type Publisher interface {
	Publish(ctx context.Context, e domain.Event)
}

// Service is the application.
type Service struct {
	tx      uow.Transactor[Repos]
	queries Queries
	pub     Publisher
}

// New returns the application service.
func New(tx uow.Transactor[Repos], queries Queries, pub Publisher) *Service {
	return &Service{tx: tx, queries: queries, pub: pub}
}

// CreateTeam creates a team.
func (s *Service) CreateTeam(ctx context.Context, name string, capacity int) (team domain.Team, err error) {
	t, err := domain.NewTeam(name, capacity)
	if err != nil {
		return domain.Team{}, err
	}
	err = s.tx.Do(ctx, func(ctx context.Context, r Repos) error {
		if team, err = r.Teams.Create(ctx, t); err != nil {
			return err
		}
		if err := r.Rosters.Init(ctx, team.ID); err != nil {
			return err
		}
		return s.record(ctx, r, domain.TeamCreated, teamCreated{team.ID, team.Name, team.Capacity})
	})
	if err != nil {
		return domain.Team{}, err
	}
	return team, nil
}

// AddPlayer adds a player to a team if it has a free place.
func (s *Service) AddPlayer(ctx context.Context, teamID int64, name string) (player domain.Player, err error) {
	p, err := domain.NewPlayer(name, teamID)
	if err != nil {
		return domain.Player{}, err
	}
	err = s.tx.Do(ctx, func(ctx context.Context, r Repos) error {
		team, err := r.Teams.Lock(ctx, teamID)
		if err != nil {
			return err
		}
		taken, err := r.Rosters.Count(ctx, teamID)
		if err != nil {
			return err
		}
		if err := team.Admit(taken); err != nil {
			return err
		}
		if player, err = r.Players.Create(ctx, p); err != nil {
			return err
		}
		if err := r.Rosters.Add(ctx, teamID, 1); err != nil {
			return err
		}
		return s.record(ctx, r, domain.PlayerJoined, playerJoined{player.ID, player.Name, player.TeamID})
	})
	if err != nil {
		return domain.Player{}, err
	}
	return player, nil
}

// MovePlayer moves a player to another team atomically: it leaves one and
// joins the other, or nothing happens. Moving a player to the team it is on
// changes nothing and records no event.
//
// Locks are taken in one order by every command, so that no two can wait
// for each other (a deadlock): the player first, then the teams by
// ascending id (AddPlayer locks one team and no player row).
func (s *Service) MovePlayer(ctx context.Context, playerID, teamID int64) (player domain.Player, err error) {
	err = s.tx.Do(ctx, func(ctx context.Context, r Repos) error {
		if player, err = r.Players.Lock(ctx, playerID); err != nil {
			return err
		}
		from := player.TeamID
		if from == teamID {
			return nil
		}
		var to domain.Team
		for _, id := range []int64{min(from, teamID), max(from, teamID)} {
			t, err := r.Teams.Lock(ctx, id)
			if err != nil {
				return err
			}
			if id == teamID {
				to = t
			}
		}
		taken, err := r.Rosters.Count(ctx, teamID)
		if err != nil {
			return err
		}
		if player, err = player.MoveTo(to, taken); err != nil {
			return err
		}
		if err := r.Players.SetTeam(ctx, playerID, teamID); err != nil {
			return err
		}
		if err := r.Rosters.Add(ctx, from, -1); err != nil {
			return err
		}
		if err := r.Rosters.Add(ctx, teamID, 1); err != nil {
			return err
		}
		return s.record(ctx, r, domain.PlayerMoved, playerMoved{playerID, from, teamID})
	})
	if err != nil {
		return domain.Player{}, err
	}
	return player, nil
}

// Team returns a team with its players, from the read side.
func (s *Service) Team(ctx context.Context, id int64) (domain.Roster, error) {
	return s.queries.Roster(ctx, id)
}

// Event payloads, as stored in events.payload and published.
type (
	teamCreated struct {
		ID       int64  `json:"id"`
		Name     string `json:"name"`
		Capacity int    `json:"capacity"`
	}
	playerJoined struct {
		ID     int64  `json:"id"`
		Name   string `json:"name"`
		TeamID int64  `json:"team_id"`
	}
	playerMoved struct {
		Player int64 `json:"player"`
		From   int64 `json:"from"`
		To     int64 `json:"to"`
	}
)

// record appends the event in the unit and publishes it once the unit has
// committed, so nothing is published for work that rolled back. When the
// unit is a request's, the publication runs after the response has gone,
// on a context of its own with a deadline (the middleware's HookTimeout).
func (s *Service) record(ctx context.Context, r Repos, typ string, payload any) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("event %s: %w", typ, err)
	}
	e, err := r.Events.Append(ctx, domain.Event{Type: typ, Payload: string(b)})
	if err != nil {
		return err
	}
	return uow.AfterCommit(ctx, func(ctx context.Context) error {
		s.pub.Publish(ctx, e)
		return nil
	})
}

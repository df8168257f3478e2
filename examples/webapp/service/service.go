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
		return s.record(ctx, r, domain.TeamCreated, team)
	})
	return team, err
}

// AddPlayer adds a player to a team if it has a free place.
func (s *Service) AddPlayer(ctx context.Context, teamID int64, name string) (player domain.Player, err error) {
	p, err := domain.NewPlayer(name, teamID)
	if err != nil {
		return domain.Player{}, err
	}
	err = s.tx.Do(ctx, func(ctx context.Context, r Repos) error {
		if err := admit(ctx, r, teamID); err != nil {
			return err
		}
		if player, err = r.Players.Create(ctx, p); err != nil {
			return err
		}
		if err := r.Rosters.Add(ctx, teamID, 1); err != nil {
			return err
		}
		return s.record(ctx, r, domain.PlayerJoined, player)
	})
	return player, err
}

// MovePlayer moves a player to another team atomically: it leaves one and
// joins the other, or nothing happens.
func (s *Service) MovePlayer(ctx context.Context, playerID, teamID int64) (player domain.Player, err error) {
	err = s.tx.Do(ctx, func(ctx context.Context, r Repos) error {
		// Lock order: the player, then the teams by id, so that concurrent
		// moves and joins cannot deadlock.
		if player, err = r.Players.Lock(ctx, playerID); err != nil {
			return err
		}
		from := player.TeamID
		if from == teamID {
			return nil
		}
		for _, id := range []int64{min(from, teamID), max(from, teamID)} {
			if _, err := r.Teams.Lock(ctx, id); err != nil {
				return err
			}
		}
		if err := admit(ctx, r, teamID); err != nil {
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
		player.TeamID = teamID
		return s.record(ctx, r, domain.PlayerMoved, map[string]int64{"player": playerID, "from": from, "to": teamID})
	})
	return player, err
}

// admit locks the team and checks it has a free place.
func admit(ctx context.Context, r Repos, teamID int64) error {
	team, err := r.Teams.Lock(ctx, teamID)
	if err != nil {
		return err
	}
	taken, err := r.Rosters.Count(ctx, teamID)
	if err != nil {
		return err
	}
	return team.Admit(taken)
}

// Team returns a team with its players, from the read side.
func (s *Service) Team(ctx context.Context, id int64) (domain.Roster, error) {
	return s.queries.Roster(ctx, id)
}

// record appends the event in the unit and publishes it once the unit has
// committed, so nothing is published for work that rolled back.
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

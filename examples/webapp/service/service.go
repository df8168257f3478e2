package service

import (
	"context"
	"fmt"
	"time"

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

// EventRepository records domain events in the unit, to be published once
// it commits (the transactional outbox).
type EventRepository interface {
	// Record records e, giving it an id when it has none, and returns it.
	Record(ctx context.Context, e domain.Event) (domain.Event, error)
}

// Repos is what one unit of work hands a command.
type Repos struct {
	Teams   TeamRepository
	Players PlayerRepository
	Rosters RosterRepository
	Events  EventRepository
}

// Queries is the read side: the projection the projector maintains from
// the events, in tables of its own.
type Queries interface {
	// Roster returns a team and its players. domain.NotFound if absent.
	Roster(ctx context.Context, id int64) (domain.Roster, error)
	// History returns a team's joins and moves, oldest first.
	// domain.NotFound if the team is absent.
	History(ctx context.Context, id int64) ([]domain.HistoryEntry, error)
	// Applied reports whether the projection has applied the event whose
	// id is token.
	Applied(ctx context.Context, token string) (bool, error)
	// Lag returns how far the projection is behind the events recorded
	// (see Lag in docs/architecture.md).
	Lag(ctx context.Context) (time.Duration, error)
}

// Signal tells readers that the projection has applied something: the
// channel C returns is closed at the next change. Nil: readers only poll.
type Signal interface {
	C() <-chan struct{}
}

// DefaultWait bounds how long a read with a consistency token waits for
// the projection by default.
const DefaultWait = 2 * time.Second

// poll is how often a read with a token looks again when no Signal wakes
// it first (a projector in another process, a replica).
const poll = 20 * time.Millisecond

// ErrBehind is the error of a read whose token the projection had not
// applied within the wait.
var ErrBehind = domain.Errorf(domain.Unavailable, "projection behind")

// Service is the application.
type Service struct {
	tx      uow.Transactor[Repos]
	queries Queries
	wait    time.Duration
	signal  Signal
	now     func() time.Time
}

// Options are the service's settings; the zero value is usable.
type Options struct {
	// Wait bounds how long a read with a consistency token waits for the
	// projection to apply it (0: DefaultWait).
	Wait time.Duration
	// Signal, when set, wakes such reads as soon as the projection
	// changes.
	Signal Signal
}

// New returns the application service.
func New(tx uow.Transactor[Repos], queries Queries, o Options) *Service {
	if o.Wait <= 0 {
		o.Wait = DefaultWait
	}
	return &Service{tx: tx, queries: queries, wait: o.Wait, signal: o.Signal, now: time.Now}
}

// CreateTeam creates a team.
// The token is the id of the event recorded: give it to a query
// (Team, History) to read the projection once it shows the command.
func (s *Service) CreateTeam(ctx context.Context, name string, capacity int) (team domain.Team, token string, err error) {
	t, err := domain.NewTeam(name, capacity)
	if err != nil {
		return domain.Team{}, "", err
	}
	err = s.tx.Do(ctx, func(ctx context.Context, r Repos) error {
		if team, err = r.Teams.Create(ctx, t); err != nil {
			return err
		}
		if err := r.Rosters.Init(ctx, team.ID); err != nil {
			return err
		}
		token, err = s.record(ctx, r, domain.Event{Type: domain.TeamCreated, TeamID: team.ID, TeamName: team.Name, Capacity: team.Capacity})
		return err
	})
	if err != nil {
		return domain.Team{}, "", err
	}
	return team, token, nil
}

// AddPlayer adds a player to a team if it has a free place, and returns
// the token of the event recorded. A refused join records nothing.
func (s *Service) AddPlayer(ctx context.Context, teamID int64, name string) (player domain.Player, token string, err error) {
	p, err := domain.NewPlayer(name, teamID)
	if err != nil {
		return domain.Player{}, "", err
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
		token, err = s.record(ctx, r, domain.Event{Type: domain.PlayerJoined, TeamID: teamID, PlayerID: player.ID, PlayerName: player.Name})
		return err
	})
	if err != nil {
		return domain.Player{}, "", err
	}
	return player, token, nil
}

// MovePlayer moves a player to another team atomically: it leaves one and
// joins the other, or nothing happens. Moving a player to the team it is on
// changes nothing, records no event and returns no token.
//
// Locks are taken in one order by every command, so that no two can wait
// for each other (a deadlock): the player first, then the teams by
// ascending id (AddPlayer locks one team and no player row).
func (s *Service) MovePlayer(ctx context.Context, playerID, teamID int64) (player domain.Player, token string, err error) {
	err = s.tx.Do(ctx, func(ctx context.Context, r Repos) error {
		if player, err = r.Players.Lock(ctx, playerID); err != nil {
			return err
		}
		from := player.TeamID
		if from == teamID {
			token = "" // a retried attempt starts over
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
		token, err = s.record(ctx, r, domain.Event{Type: domain.PlayerMoved, TeamID: teamID, PlayerID: playerID,
			PlayerName: player.Name, FromTeamID: from, ToTeamID: teamID})
		return err
	})
	if err != nil {
		return domain.Player{}, "", err
	}
	return player, token, nil
}

// record records e in the unit: it commits with the command's changes, and
// is then published by the outbox's relay; a unit that rolls back leaves no
// trace of it. It returns the event's id, the command's consistency token.
func (s *Service) record(ctx context.Context, r Repos, e domain.Event) (string, error) {
	e.OccurredAt = s.now().UTC()
	e, err := r.Events.Record(ctx, e)
	if err != nil {
		return "", fmt.Errorf("event %s: %w", e.Type, err)
	}
	return e.ID, nil
}

// Team returns a team with its players, from the projection, and how far
// the projection is behind (Queries.Lag). With a token (a command's), it
// answers once the projection has applied that command's event, waiting
// for it at most the service's Wait, else fails with ErrBehind: never a
// roster that does not show the command yet.
func (s *Service) Team(ctx context.Context, id int64, token string) (ro domain.Roster, lag time.Duration, err error) {
	lag, err = s.read(ctx, token, func(ctx context.Context) (err error) {
		ro, err = s.queries.Roster(ctx, id)
		return err
	})
	return ro, lag, err
}

// History returns a team's joins and moves from the projection, as Team
// does its roster.
func (s *Service) History(ctx context.Context, id int64, token string) (h []domain.HistoryEntry, lag time.Duration, err error) {
	lag, err = s.read(ctx, token, func(ctx context.Context) (err error) {
		h, err = s.queries.History(ctx, id)
		return err
	})
	return h, lag, err
}

// read runs fn on the projection, and reads its lag, in one unit. Without a
// token that is the caller's unit (the request's). With one, each attempt
// is a read-only unit of its own (uow.RequiresNew), which checks that the
// token's event is applied and then runs fn: the check and the read see
// the same state, on whichever database (a replica) the unit runs, and a
// new unit sees what committed since the last (a SQLite transaction would
// keep its first snapshot). Between attempts nothing is held: no
// transaction, no connection.
func (s *Service) read(ctx context.Context, token string, fn func(ctx context.Context) error) (lag time.Duration, err error) {
	attempt := func(opts ...uow.Option) (done bool, err error) {
		err = s.tx.Do(ctx, func(ctx context.Context, _ Repos) error {
			done = false
			if token != "" {
				ok, err := s.queries.Applied(ctx, token)
				if err != nil || !ok {
					return err
				}
			}
			done = true
			if err := fn(ctx); err != nil {
				return err
			}
			lag, err = s.queries.Lag(ctx)
			return err
		}, opts...)
		return done, err
	}
	if token == "" {
		_, err := attempt()
		return lag, err
	}
	deadline := time.NewTimer(s.wait)
	defer deadline.Stop()
	for {
		var changed <-chan struct{}
		if s.signal != nil {
			changed = s.signal.C() // before the check: a change after it is not missed
		}
		done, err := attempt(uow.Propagate(uow.RequiresNew), uow.ReadOnly())
		if err != nil || done {
			return lag, err
		}
		t := time.NewTimer(poll)
		select {
		case <-changed:
		case <-t.C:
		case <-deadline.C:
			t.Stop()
			return 0, ErrBehind
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		}
		t.Stop()
	}
}

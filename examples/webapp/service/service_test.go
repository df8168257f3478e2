package service_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/uowkit/uowkit/examples/webapp/domain"
	"github.com/uowkit/uowkit/examples/webapp/service"
	"github.com/uowkit/uowkit/uow/uowtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memory is an in-memory store for the service's repositories.
type memory struct {
	teams   map[int64]domain.Team
	players map[int64]domain.Player
	rosters map[int64]int
	events  []domain.Event
	fail    error // returned by every write when set
}

func newMemory() *memory {
	return &memory{teams: map[int64]domain.Team{}, players: map[int64]domain.Player{}, rosters: map[int64]int{}}
}

func (m *memory) repos() service.Repos {
	return service.Repos{Teams: teams{m}, Players: players{m}, Rosters: rosters{m}, Events: events{m}}
}

type teams struct{ m *memory }

func (r teams) Create(_ context.Context, t domain.Team) (domain.Team, error) {
	if r.m.fail != nil {
		return t, r.m.fail
	}
	t.ID = int64(len(r.m.teams) + 1)
	r.m.teams[t.ID] = t
	return t, nil
}

func (r teams) Lock(_ context.Context, id int64) (domain.Team, error) {
	t, ok := r.m.teams[id]
	if !ok {
		return t, domain.Errorf(domain.NotFound, "team %d not found", id)
	}
	return t, nil
}

type players struct{ m *memory }

func (r players) Create(_ context.Context, p domain.Player) (domain.Player, error) {
	if r.m.fail != nil {
		return p, r.m.fail
	}
	p.ID = int64(len(r.m.players) + 1)
	r.m.players[p.ID] = p
	return p, nil
}

func (r players) Lock(_ context.Context, id int64) (domain.Player, error) {
	p, ok := r.m.players[id]
	if !ok {
		return p, domain.Errorf(domain.NotFound, "player %d not found", id)
	}
	return p, nil
}

func (r players) SetTeam(_ context.Context, player, team int64) error {
	p := r.m.players[player]
	p.TeamID = team
	r.m.players[player] = p
	return nil
}

type rosters struct{ m *memory }

func (r rosters) Init(_ context.Context, team int64) error { r.m.rosters[team] = 0; return nil }
func (r rosters) Count(_ context.Context, team int64) (int, error) {
	return r.m.rosters[team], nil
}
func (r rosters) Add(_ context.Context, team int64, d int) error { r.m.rosters[team] += d; return nil }

type events struct{ m *memory }

func (r events) Append(_ context.Context, e domain.Event) (domain.Event, error) {
	e.ID = int64(len(r.m.events) + 1)
	r.m.events = append(r.m.events, e)
	return e, nil
}

type published []string

func (p *published) Publish(_ context.Context, e domain.Event) { *p = append(*p, e.Type) }

type noQueries struct{}

func (noQueries) Roster(context.Context, int64) (domain.Roster, error) { return domain.Roster{}, nil }

func setup() (*service.Service, *uowtest.Fake[service.Repos], *memory, *published) {
	mem := newMemory()
	fake := uowtest.New(mem.repos())
	pub := &published{}
	return service.New(fake, noQueries{}, pub), fake, mem, pub
}

func TestAddPlayerCommitsUntilTheTeamIsFull(t *testing.T) {
	svc, fake, _, pub := setup()
	ctx := context.Background()
	team, err := svc.CreateTeam(ctx, "Reds", 2)
	require.NoError(t, err)
	for _, name := range []string{"Ann", "Bob"} {
		_, err := svc.AddPlayer(ctx, team.ID, name)
		require.NoError(t, err)
	}
	_, err = svc.AddPlayer(ctx, team.ID, "Cid")
	assert.Equal(t, domain.Conflict, domain.ErrorCode(err))

	calls := fake.Calls()
	require.Len(t, calls, 4)
	assert.True(t, calls[2].Committed)
	assert.True(t, calls[3].RolledBack, "a full team rolls the unit back")
	assert.Equal(t, []string{domain.TeamCreated, domain.PlayerJoined, domain.PlayerJoined}, []string(*pub),
		"nothing is published for the rolled-back join")
}

func TestInvalidInputNeverOpensAUnit(t *testing.T) {
	svc, fake, _, _ := setup()
	ctx := context.Background()
	_, err := svc.CreateTeam(ctx, "  ", 3)
	assert.Equal(t, domain.Invalid, domain.ErrorCode(err))
	_, err = svc.CreateTeam(ctx, "Reds", 0)
	assert.Equal(t, domain.Invalid, domain.ErrorCode(err))
	_, err = svc.AddPlayer(ctx, 1, "")
	assert.Equal(t, domain.Invalid, domain.ErrorCode(err))
	assert.Empty(t, fake.Calls())
}

func TestUnknownTeamRollsBack(t *testing.T) {
	svc, fake, _, pub := setup()
	_, err := svc.AddPlayer(context.Background(), 42, "Ann")
	assert.Equal(t, domain.NotFound, domain.ErrorCode(err))
	assert.Equal(t, 1, fake.Rollbacks())
	assert.Empty(t, *pub)
}

func TestMoveIsAtomic(t *testing.T) {
	svc, fake, mem, pub := setup()
	ctx := context.Background()
	reds, _ := svc.CreateTeam(ctx, "Reds", 2)
	blues, _ := svc.CreateTeam(ctx, "Blues", 1)
	ann, _ := svc.AddPlayer(ctx, reds.ID, "Ann")
	bob, _ := svc.AddPlayer(ctx, reds.ID, "Bob")

	moved, err := svc.MovePlayer(ctx, ann.ID, blues.ID)
	require.NoError(t, err)
	assert.Equal(t, blues.ID, moved.TeamID)
	assert.Equal(t, map[int64]int{reds.ID: 1, blues.ID: 1}, mem.rosters)

	_, err = svc.MovePlayer(ctx, bob.ID, blues.ID)
	assert.Equal(t, domain.Conflict, domain.ErrorCode(err), "the target team is full")
	assert.True(t, fake.Calls()[len(fake.Calls())-1].RolledBack)
	assert.Equal(t, domain.PlayerMoved, (*pub)[len(*pub)-1])
	assert.Len(t, *pub, 5, "2 teams, 2 joins, 1 move: the failed move published nothing")

	_, err = svc.MovePlayer(ctx, 99, blues.ID)
	assert.Equal(t, domain.NotFound, domain.ErrorCode(err))
}

func TestFailedCommitPublishesNothing(t *testing.T) {
	svc, fake, _, pub := setup()
	fake.FailNextCommit(nil)
	_, err := svc.CreateTeam(context.Background(), "Reds", 3)
	require.ErrorIs(t, err, uowtest.ErrCommit)
	assert.Empty(t, *pub)
}

func TestRepositoryErrorsRollBack(t *testing.T) {
	svc, fake, mem, _ := setup()
	mem.fail = errors.New("disk on fire")
	_, err := svc.CreateTeam(context.Background(), "Reds", 3)
	require.Error(t, err)
	assert.Equal(t, domain.Internal, domain.ErrorCode(err))
	assert.Equal(t, 1, fake.Rollbacks())
}

package service_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/uowkit/uowkit/examples/webapp/domain"
	"github.com/uowkit/uowkit/examples/webapp/service"
	"github.com/uowkit/uowkit/uow"
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
	return service.Repos{Teams: teams{m}, Players: players{m}, Rosters: rosters{m}}
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

// events records events as an outbox would: they count as published
// (committed) only once their unit has committed.
type events struct {
	m   *memory
	pub *published
}

func (r events) Record(ctx context.Context, e domain.Event) (domain.Event, error) {
	e.ID = fmt.Sprintf("e%d", len(r.m.events)+1)
	r.m.events = append(r.m.events, e)
	return e, uow.AfterCommit(ctx, func(context.Context) error { *r.pub = append(*r.pub, e.Type); return nil })
}

type published []string

type noQueries struct{}

func (noQueries) Roster(context.Context, int64) (domain.Roster, error) { return domain.Roster{}, nil }
func (noQueries) History(context.Context, int64) ([]domain.HistoryEntry, error) {
	return nil, nil
}
func (noQueries) Applied(context.Context, string) (bool, error) { return false, nil }
func (noQueries) Lag(context.Context) (time.Duration, error)    { return 0, nil }

func setup() (*service.Service, *uowtest.Fake[service.Repos], *memory, *published) {
	mem := newMemory()
	pub := &published{}
	repos := mem.repos()
	repos.Events = events{mem, pub}
	fake := uowtest.New(repos)
	return service.New(fake, noQueries{}, service.Options{Wait: time.Millisecond}), fake, mem, pub
}

func TestAddPlayerCommitsUntilTheTeamIsFull(t *testing.T) {
	svc, fake, _, pub := setup()
	ctx := context.Background()
	team, _, err := svc.CreateTeam(ctx, "Reds", 2)
	require.NoError(t, err)
	for _, name := range []string{"Ann", "Bob"} {
		_, _, err := svc.AddPlayer(ctx, team.ID, name)
		require.NoError(t, err)
	}
	_, _, err = svc.AddPlayer(ctx, team.ID, "Cid")
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
	_, _, err := svc.CreateTeam(ctx, "  ", 3)
	assert.Equal(t, domain.Invalid, domain.ErrorCode(err))
	_, _, err = svc.CreateTeam(ctx, "Reds", 0)
	assert.Equal(t, domain.Invalid, domain.ErrorCode(err))
	_, _, err = svc.AddPlayer(ctx, 1, "")
	assert.Equal(t, domain.Invalid, domain.ErrorCode(err))
	_, _, err = svc.AddPlayer(ctx, 1, "nul\x00byte")
	assert.Equal(t, domain.Invalid, domain.ErrorCode(err))
	assert.Empty(t, fake.Calls())
}

func TestUnknownTeamRollsBack(t *testing.T) {
	svc, fake, _, pub := setup()
	_, _, err := svc.AddPlayer(context.Background(), 42, "Ann")
	assert.Equal(t, domain.NotFound, domain.ErrorCode(err))
	assert.Equal(t, 1, fake.Rollbacks())
	assert.Empty(t, *pub)
}

// Every move rule, and whether its unit commits or rolls back.
func TestMoveRulesCommitOrRollBack(t *testing.T) {
	const unknown = 99
	for _, tc := range []struct {
		name         string
		player, team string // names of a player and a team set up below, or "" for an unknown id
		code         domain.Code
		commit       bool
		published    []string
		rosters      map[string]int // after the call: players per team, by team name; nil: unchanged
	}{
		{name: "into a team with room", player: "Ann", team: "Greens", commit: true,
			published: []string{domain.PlayerMoved}, rosters: map[string]int{"Reds": 1, "Blues": 1, "Greens": 1}},
		{name: "into a full team", player: "Ann", team: "Blues", code: domain.Conflict},
		{name: "unknown player", team: "Greens", code: domain.NotFound},
		{name: "unknown team", player: "Ann", code: domain.NotFound},
		{name: "onto its own full team: a no-op", player: "Cid", team: "Blues", commit: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc, fake, mem, pub := setup()
			ctx := context.Background()
			ids := map[string]int64{}
			for _, team := range []struct {
				name     string
				capacity int
				players  []string
			}{{"Reds", 2, []string{"Ann", "Bob"}}, {"Blues", 1, []string{"Cid"}}, {"Greens", 3, nil}} {
				created, _, err := svc.CreateTeam(ctx, team.name, team.capacity)
				require.NoError(t, err)
				ids[team.name] = created.ID
				for _, name := range team.players {
					p, _, err := svc.AddPlayer(ctx, created.ID, name)
					require.NoError(t, err)
					ids[name] = p.ID
				}
			}
			before := len(fake.Calls())
			*pub = nil
			player, team := int64(unknown), int64(unknown)
			if tc.player != "" {
				player = ids[tc.player]
			}
			if tc.team != "" {
				team = ids[tc.team]
			}
			oldTeam := mem.players[player].TeamID

			moved, _, err := svc.MovePlayer(ctx, player, team)

			calls := fake.Calls()
			require.Len(t, calls, before+1, "one unit per command")
			call := calls[before]
			if tc.code != "" {
				assert.Equal(t, tc.code, domain.ErrorCode(err))
				assert.True(t, call.RolledBack, "a broken rule rolls the unit back")
				assert.Equal(t, domain.Player{}, moved)
			} else {
				require.NoError(t, err)
				assert.True(t, call.Committed)
				assert.Equal(t, team, moved.TeamID)
				assert.Equal(t, team, mem.players[player].TeamID)
			}
			assert.Equal(t, tc.commit, call.Committed)
			assert.Equal(t, tc.published, []string(*pub), "published: only after a commit, only for a real move")
			want := tc.rosters
			if want == nil {
				want = map[string]int{"Reds": 2, "Blues": 1, "Greens": 0} // unchanged
				if tc.code != "" && tc.player != "" {
					assert.Equal(t, oldTeam, mem.players[player].TeamID, "the player stayed")
				}
			}
			for name, n := range want {
				assert.Equal(t, n, mem.rosters[ids[name]], "players in %s", name)
			}
		})
	}
}

func TestFailedCommitPublishesNothing(t *testing.T) {
	svc, fake, _, pub := setup()
	fake.FailNextCommit(nil)
	_, _, err := svc.CreateTeam(context.Background(), "Reds", 3)
	require.ErrorIs(t, err, uowtest.ErrCommit)
	assert.Empty(t, *pub)
}

func TestRepositoryErrorsRollBack(t *testing.T) {
	svc, fake, mem, _ := setup()
	mem.fail = errors.New("disk on fire")
	_, _, err := svc.CreateTeam(context.Background(), "Reds", 3)
	require.Error(t, err)
	assert.Equal(t, domain.Internal, domain.ErrorCode(err))
	assert.Equal(t, 1, fake.Rollbacks())
}

// A read with a token the projection never applies fails with ErrBehind
// once the wait is over, never with data.
func TestReadWithUnappliedTokenIsBehind(t *testing.T) {
	svc, _, _, _ := setup()
	_, _, err := svc.Team(context.Background(), 1, "never")
	require.ErrorIs(t, err, service.ErrBehind)
	assert.Equal(t, domain.Unavailable, domain.ErrorCode(err))
}

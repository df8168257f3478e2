package domain_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/uowkit/uowkit/examples/webapp/domain"
)

func TestNamesAreValidated(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string // want "" means rejected
	}{
		{"plain", "Reds", "Reds"},
		{"trimmed", "  Reds \n", "Reds"},
		{"unicode", "Ærø ⚽", "Ærø ⚽"},
		{"longest", strings.Repeat("é", domain.MaxName), strings.Repeat("é", domain.MaxName)},
		{"empty", "", ""},
		{"blank", " \t ", ""},
		{"too long", strings.Repeat("é", domain.MaxName+1), ""},
		{"NUL", "nul\x00byte", ""},
		{"newline inside", "two\nlines", ""},
		{"escape", "red\x1b[31m", ""},
		{"C1 control", "a\u0085b", ""},
		{"invalid UTF-8", "bad\xffbyte", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			team, terr := domain.NewTeam(tc.in, 3)
			player, perr := domain.NewPlayer(tc.in, 1)
			if tc.want == "" {
				assert.Equal(t, domain.Invalid, domain.ErrorCode(terr))
				assert.Equal(t, domain.Invalid, domain.ErrorCode(perr))
				return
			}
			assert.NoError(t, terr)
			assert.NoError(t, perr)
			assert.Equal(t, tc.want, team.Name)
			assert.Equal(t, tc.want, player.Name)
		})
	}
}

func TestMoveTo(t *testing.T) {
	full := domain.Team{ID: 2, Name: "Blues", Capacity: 1}
	ann := domain.Player{ID: 1, Name: "Ann", TeamID: 1}

	moved, err := ann.MoveTo(domain.Team{ID: 3, Capacity: 2}, 1)
	assert.NoError(t, err)
	assert.Equal(t, int64(3), moved.TeamID)

	_, err = ann.MoveTo(full, 1)
	assert.Equal(t, domain.Conflict, domain.ErrorCode(err))

	cid := domain.Player{ID: 3, Name: "Cid", TeamID: full.ID}
	stays, err := cid.MoveTo(full, 1)
	assert.NoError(t, err, "moving onto its own team is a no-op, even when it is full")
	assert.Equal(t, cid, stays)
}

package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/examples/webapp/events"
)

// The stream carries exactly the events of the commands that succeeded, in
// the contract's form (README "Events"): after two teams are created, a
// player joins one and moves to the other, a join to the full team is
// refused and a move to the player's own team changes nothing, the stream
// holds four messages: one per successful command that changed something,
// on webapp.events.<type>, with Nats-Msg-Id the body's id and the command's
// consistency token, and a body with exactly the contract's fields and the
// commands' values.
func TestStreamHoldsTheContract(t *testing.T) {
	backends(t, func(t *testing.T, e env) {
		c, _ := start(t, e.db, quiet)
		before := time.Now().UTC()
		reds := c.team("Reds", 1)
		redsToken := c.token()
		blues := c.team("Blues", 1)
		bluesToken := c.token()
		ann := c.player(reds, "Ann")
		joinToken := c.token()
		status, body, h := c.doWith("POST", fmt.Sprintf("/players/%d/move", ann), fmt.Sprintf(`{"team_id":%d}`, blues), nil)
		require.Equal(t, 200, status, body)
		moveToken := h.Get("X-Consistency-Token")
		require.NotEmpty(t, moveToken)

		status, body, h = c.doWith("POST", fmt.Sprintf("/teams/%d/players", blues), `{"name":"Bob"}`, nil)
		require.Equal(t, 409, status, body, "Blues is full")
		assert.Empty(t, h.Get("X-Consistency-Token"))
		status, body, h = c.doWith("POST", fmt.Sprintf("/players/%d/move", ann), fmt.Sprintf(`{"team_id":%d}`, blues), nil)
		require.Equal(t, 200, status, body, "a move to the player's own team")
		assert.Empty(t, h.Get("X-Consistency-Token"))
		after := time.Now().UTC()

		// Every recorded event published: the stream can hold nothing else.
		require.Eventually(t, func() bool {
			return count(t, e.db, `SELECT count(*) FROM uowkit_outbox WHERE delivered_at IS NULL`) == 0
		}, 30*time.Second, 5*time.Millisecond, "the relay publishes every event recorded")
		require.Equal(t, 4, count(t, e.db, `SELECT count(*) FROM uowkit_outbox`), "four events recorded")

		ctx := context.Background()
		s, err := c.broker.JS.Stream(ctx, events.Stream)
		require.NoError(t, err)
		info, err := s.Info(ctx)
		require.NoError(t, err)
		require.Equal(t, uint64(4), info.State.Msgs, "four messages on the stream")
		require.Equal(t, []string{events.Subjects}, info.Config.Subjects)

		msgs := map[string]*jetstream.RawStreamMsg{} // by Nats-Msg-Id
		bodies := map[string]map[string]any{}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
			m, err := s.GetMsg(ctx, seq)
			require.NoError(t, err)
			id := m.Header.Get("Nats-Msg-Id")
			require.Len(t, id, 32, "Nats-Msg-Id: the event id, 32 hex digits")
			require.NotContains(t, msgs, id, "an id on the stream once")
			var b map[string]any
			require.NoError(t, json.Unmarshal(m.Data, &b), "%s", m.Data)
			msgs[id], bodies[id] = m, b
		}
		for _, token := range []string{redsToken, bluesToken, joinToken, moveToken} {
			require.Contains(t, msgs, token, "the command's consistency token is its message's Nats-Msg-Id")
		}
		assert.Less(t, msgs[joinToken].Sequence, msgs[moveToken].Sequence, "a player's events in commit order")

		// check compares a message with its subject and body: the JSON
		// numbers as float64, occurred_at checked apart.
		check := func(token, typ string, want map[string]any) {
			t.Helper()
			m, b := msgs[token], bodies[token]
			assert.Equal(t, "webapp.events."+typ, m.Subject)
			occurred, ok := b["occurred_at"].(string)
			if assert.True(t, ok, "occurred_at is a string: %v", b["occurred_at"]) {
				at, err := time.Parse(time.RFC3339, occurred)
				if assert.NoError(t, err, "occurred_at is RFC 3339") {
					assert.True(t, strings.HasSuffix(occurred, "Z"), "occurred_at in UTC: %s", occurred)
					assert.False(t, at.Before(before.Truncate(time.Microsecond)), "occurred_at %s before the command (%s)", at, before)
					assert.False(t, at.After(after), "occurred_at %s after the command (%s)", at, after)
				}
			}
			delete(b, "occurred_at")
			want["id"], want["type"] = token, typ
			assert.Equal(t, want, b, "the body of %s", m.Subject)
		}
		num := func(id int64) float64 { return float64(id) }
		check(redsToken, "team_created", map[string]any{"team_id": num(reds), "name": "Reds", "capacity": 1.0})
		check(bluesToken, "team_created", map[string]any{"team_id": num(blues), "name": "Blues", "capacity": 1.0})
		check(joinToken, "player_joined", map[string]any{"team_id": num(reds), "player_id": num(ann), "player_name": "Ann"})
		check(moveToken, "player_moved", map[string]any{"team_id": num(blues), "player_id": num(ann), "player_name": "Ann",
			"from_team_id": num(reds), "to_team_id": num(blues)})

		// The projection, read with the last token, agrees.
		status, body, _ = c.fresh(http.MethodGet, fmt.Sprintf("/teams/%d", blues), moveToken)
		require.Equal(t, 200, status, body)
		assert.Len(t, body["players"], 1)
	})
}

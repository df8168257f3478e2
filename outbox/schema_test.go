package outbox_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/outbox"
)

func TestTableNames(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"", true},
		{"events_outbox", true},
		{"_x1", true},
		{"1x", false},
		{"Outbox", false},
		{"public.outbox", false},
		{`x"; DROP TABLE users; --`, false},
		{"select", false},
		{strings.Repeat("x", 49), false},
		{strings.Repeat("x", 48), true},
	} {
		_, err := outbox.Schema(outbox.Postgres, tt.name)
		if tt.ok {
			assert.NoError(t, err, tt.name)
		} else {
			assert.ErrorIs(t, err, outbox.ErrInvalidName, tt.name)
		}
	}
	_, err := outbox.Schema(outbox.Dialect(9), "")
	assert.ErrorIs(t, err, outbox.ErrInvalidConfig)
}

// Schema renames every object of the embedded files.
func TestSchemaRenames(t *testing.T) {
	for _, d := range []outbox.Dialect{outbox.Postgres, outbox.SQLite} {
		s, err := outbox.Schema(d, "events")
		require.NoError(t, err)
		assert.NotContains(t, s, "uowkit_outbox")
		for _, want := range []string{"TABLE IF NOT EXISTS events (", "events_keys", "events_lease"} {
			assert.Contains(t, s, want, d)
		}
		def, err := outbox.Schema(d, "")
		require.NoError(t, err)
		file, err := outbox.SchemaFiles.ReadFile("schema/" + d.String() + "/outbox.sql")
		require.NoError(t, err)
		assert.Equal(t, string(file), def)
		in, err := outbox.InboxSchema(d, "seen")
		require.NoError(t, err)
		assert.Contains(t, in, "TABLE IF NOT EXISTS seen (")
	}
	s, _ := outbox.Schema(outbox.Postgres, "events")
	assert.Contains(t, s, "pg_notify('events', '')")
}

package app_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/examples/webapp/app"
)

// The PostgreSQL pool has Database.MaxConns connections (DB_MAX_CONNS),
// app.MaxConns by default; SQLite always one, in a file whose directory is
// created if missing.
func TestOpenPoolSize(t *testing.T) {
	const url = "postgres://127.0.0.1:1/none?sslmode=disable" // opened lazily: never dialled here
	for _, tc := range []struct {
		name string
		d    app.Database
		want int
	}{
		{"postgres", app.Database{URL: url, MaxConns: 7}, 7},
		{"postgres default", app.Database{URL: url}, app.MaxConns},
		{"sqlite", app.Database{SQLitePath: filepath.Join(t.TempDir(), "new", "dir", "webapp.db"), MaxConns: 7}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := app.Open(tc.d)
			require.NoError(t, err)
			defer db.Close()
			assert.Equal(t, tc.want, db.Stats().MaxOpenConnections)
			if tc.d.URL == "" {
				require.NoError(t, db.Ping(), "the file and its directory are created")
			}
		})
	}
	_, err := app.Open(app.Database{URL: url, MaxConns: -1})
	assert.Error(t, err)
}

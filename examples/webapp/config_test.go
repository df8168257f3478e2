package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// getenv serves the variables of vars.
func getenv(vars map[string]string) func(string) string {
	return func(key string) string { return vars[key] }
}

// Without DATABASE_URL and SQLITE_PATH, the SQLite file is the user's,
// in their cache directory; a user without one must say where it goes.
func TestConfigDefaults(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // on Linux; elsewhere the real one
	cache, err := os.UserCacheDir()
	require.NoError(t, err)
	cfg, err := configFrom(getenv(nil))
	require.NoError(t, err)
	assert.Equal(t, config{
		SQLitePath:     filepath.Join(cache, "uowkit", "webapp.db"),
		MaxConns:       20,
		Addr:           ":8080",
		RequestTimeout: 10 * time.Second,
		Grace:          15 * time.Second,
		Wait:           2 * time.Second,
		LogLevel:       slog.LevelInfo,
	}, cfg)

	cfg, err = configFrom(getenv(map[string]string{
		"DATABASE_URL": "postgres://db.example/app", "DB_MAX_CONNS": "7", "REQUEST_TIMEOUT": "250ms",
		"SHUTDOWN_GRACE": "1m", "LOG_LEVEL": "debug", "ADDR": "127.0.0.1:9000",
		"NATS_URL": "nats://broker.example:4222", "REPLICA_URLS": "postgres://r1.example/app, postgres://r2.example/app",
		"CONSISTENCY_WAIT": "500ms",
	}))
	require.NoError(t, err)
	assert.Equal(t, config{
		DatabaseURL:    "postgres://db.example/app", // no SQLite file then
		MaxConns:       7,
		Addr:           "127.0.0.1:9000",
		RequestTimeout: 250 * time.Millisecond,
		Grace:          time.Minute,
		Wait:           500 * time.Millisecond,
		NATSURL:        "nats://broker.example:4222",
		ReplicaURLs:    []string{"postgres://r1.example/app", "postgres://r2.example/app"},
		LogLevel:       slog.LevelDebug,
	}, cfg)
}

// Without a home directory there is no default SQLite file: the error says
// what to set.
func TestConfigWithoutCacheDir(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("os.UserCacheDir is found from HOME and XDG_CACHE_HOME on Linux only")
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "")
	_, err := configFrom(getenv(nil))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "set SQLITE_PATH or DATABASE_URL")
	cfg, err := configFrom(getenv(map[string]string{"SQLITE_PATH": "here.db"}))
	require.NoError(t, err)
	assert.Equal(t, "here.db", cfg.SQLitePath)
}

// A bad value is an error that names the variable, what it wants and what
// it got; every bad value is reported at once.
func TestConfigRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		key, value, want string
	}{
		{"DB_MAX_CONNS", "0", `DB_MAX_CONNS: want a positive number of connections such as 20, got "0"`},
		{"DB_MAX_CONNS", "-3", `DB_MAX_CONNS: want a positive number of connections such as 20, got "-3"`},
		{"DB_MAX_CONNS", "lots", `DB_MAX_CONNS: want a positive number of connections such as 20, got "lots"`},
		{"REQUEST_TIMEOUT", "10", `REQUEST_TIMEOUT: want a positive duration such as 10s, got "10"`},
		{"REQUEST_TIMEOUT", "0s", `REQUEST_TIMEOUT: want a positive duration such as 10s, got "0s"`},
		{"REQUEST_TIMEOUT", "-1s", `REQUEST_TIMEOUT: want a positive duration such as 10s, got "-1s"`},
		{"SHUTDOWN_GRACE", "soon", `SHUTDOWN_GRACE: want a positive duration such as 15s, got "soon"`},
		{"LOG_LEVEL", "verbose", `LOG_LEVEL: want debug, info, warn or error, got "verbose"`},
		{"CONSISTENCY_WAIT", "0s", `CONSISTENCY_WAIT: want a positive duration such as 2s, got "0s"`},
		{"REPLICA_URLS", "postgres://r1.example/app", "REPLICA_URLS: replicas of PostgreSQL need DATABASE_URL"},
	} {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			_, err := configFrom(getenv(map[string]string{tc.key: tc.value}))
			require.Error(t, err)
			assert.Equal(t, tc.want, err.Error())
		})
	}
	_, err := configFrom(getenv(map[string]string{"DB_MAX_CONNS": "x", "REQUEST_TIMEOUT": "y", "SHUTDOWN_GRACE": "z"}))
	require.Error(t, err)
	for _, key := range []string{"DB_MAX_CONNS", "REQUEST_TIMEOUT", "SHUTDOWN_GRACE"} {
		assert.Contains(t, err.Error(), key+":")
	}
}

// The settings are logged at start; the database's password is not,
// however DATABASE_URL carries it.
func TestConfigLogsNoPassword(t *testing.T) {
	for _, tc := range []struct {
		name, url string
	}{
		{"url", "postgres://ann:s3cret@db.example:6543/teams?sslmode=disable"},
		{"url query", "postgres://ann@db.example:6543/teams?password=s3cret"},
		{"key value", "host=db.example port=6543 dbname=teams user=ann password='s3cret'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			log := slog.New(slog.NewTextHandler(&out, nil))
			log.Info("webapp starting", slog.Any("config", config{DatabaseURL: tc.url, MaxConns: 5, RequestTimeout: time.Second}))
			line := out.String()
			assert.NotContains(t, line, "s3cret")
			for _, want := range []string{"config.database.driver=postgres", "config.database.host=db.example",
				"config.database.port=6543", "config.database.name=teams", "config.database.user=ann",
				"config.database.max_conns=5", "config.request_timeout=1s"} {
				assert.Contains(t, line, want)
			}
		})
	}
}

// lockedBuffer is a log output that tests can read while the service
// writes to it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the JSON log lines written so far.
func (l *lockedBuffer) lines(t *testing.T) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
		out = append(out, m)
	}
	return out
}

// Each request gets an id (the client's X-Request-Id when usable, else a
// fresh one), sent back in X-Request-Id, and one access log line carrying
// it with the method, route, status and duration; the log lines of the
// request's unit carry the same id. The start line says which database
// the service uses.
func TestRequestsAreLoggedWithTheirID(t *testing.T) {
	out := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := startSQLite(t, log)
	type sent struct{ header, got string }
	var requests []sent
	for _, header := range []string{"", "client-id-42", "has space", strings.Repeat("x", 129)} {
		req, err := http.NewRequest("POST", "http://"+s.addr+"/teams", strings.NewReader(`{"name":"Reds","capacity":2}`))
		require.NoError(t, err)
		if header != "" {
			req.Header.Set("X-Request-Id", header)
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, http.StatusCreated, res.StatusCode)
		requests = append(requests, sent{header, res.Header.Get("X-Request-Id")})
	}
	// Once run has returned, every request has logged its line.
	s.signal(syscall.SIGTERM)
	require.NoError(t, s.stopped())

	assert.Equal(t, "client-id-42", requests[1].got, "a usable id of the client's is kept")
	seen := map[string]bool{}
	for _, r := range requests {
		require.NotEmpty(t, r.got, "X-Request-Id is answered")
		if r.header != "client-id-42" {
			assert.NotEqual(t, r.header, r.got, "an id given for none, or an unusable one, is replaced")
		}
		assert.False(t, seen[r.got], "ids are unique")
		seen[r.got] = true
	}

	lines := out.lines(t)
	var start map[string]any
	access := map[string]map[string]any{} // by request id
	unit := map[string]int{}              // unit lines by request id
	for _, l := range lines {
		switch l["msg"] {
		case "webapp starting":
			start = l
		case "request":
			access[l["id"].(string)] = l
		case "uow unit", "uow begin", "uow commit":
			if r, ok := l["request"].(map[string]any); ok {
				unit[r["id"].(string)]++
			}
		}
	}
	require.NotNil(t, start)
	db := start["config"].(map[string]any)["database"].(map[string]any)
	assert.Equal(t, "sqlite", db["driver"])
	nats := start["config"].(map[string]any)["nats"].(map[string]any)
	assert.Equal(t, true, nats["embedded"], "the NATS line: embedded, and where")
	assert.NotEmpty(t, nats["dir"])
	assert.True(t, strings.HasSuffix(db["path"].(string), "webapp.db") && filepath.IsAbs(db["path"].(string)), db["path"])

	for _, r := range requests {
		a := access[r.got]
		require.NotNil(t, a, "an access line for request %q", r.got)
		assert.Equal(t, "POST", a["method"])
		assert.Equal(t, "/teams", a["route"])
		assert.Equal(t, 201.0, a["status"])
		assert.Contains(t, a, "duration")
		assert.Equal(t, 3, unit[r.got], "the unit's begin, commit and unit lines carry the request's id")
	}
	assert.Len(t, access, len(requests), "one access line per request")
}

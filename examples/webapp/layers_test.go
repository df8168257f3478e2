package main

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const module = "github.com/uowkit/uowkit/"

// Infrastructure that the inner layers must not know.
var infrastructure = []string{
	"database/sql", "net/http", "github.com/jmoiron/sqlx", "github.com/lib/pq",
	"github.com/labstack/echo", "modernc.org/sqlite", "github.com/jackc/pgx",
}

// The layers import only what they may (see docs/architecture.md): the
// domain nothing but the standard library, minus infrastructure and wire
// formats; the service the domain and uowkit's uow; neither knows a driver,
// sqlx, database/sql, HTTP or Echo. The store and the HTTP layer do not know
// each other. Only the package's own files are read, not its tests.
func TestLayers(t *testing.T) {
	own := func(pkg string) string { return module + "examples/webapp/" + pkg }
	for _, tc := range []struct {
		dir     string
		allowed []string // import path prefixes beyond the standard library; nil: any
		denied  []string
	}{
		{"domain", []string{}, append([]string{"encoding/json"}, infrastructure...)},
		{"service", []string{own("domain"), module + "uow"}, infrastructure},
		{"events", []string{own("domain")}, infrastructure},
		{"projection", nil, []string{"net/http", "github.com/labstack/echo", own("httpapi"), own("service"), own("app")}},
		{"store", nil, []string{"net/http", "github.com/labstack/echo", own("httpapi"), own("service"), own("app")}},
		{"httpapi", nil, []string{"database/sql", "github.com/jmoiron/sqlx", "github.com/lib/pq", "modernc.org/sqlite",
			module + "uow", module + "repo", own("store"), own("service"), own("app")}},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			imports := importsOf(t, tc.dir)
			require.NotEmpty(t, imports)
			for _, imp := range imports {
				for _, d := range tc.denied {
					assert.False(t, imp == d || strings.HasPrefix(imp, d+"/"), "%s imports %s", tc.dir, imp)
				}
				if tc.allowed != nil && !standard(imp) {
					ok := false
					for _, a := range tc.allowed {
						ok = ok || imp == a || strings.HasPrefix(imp, a+"/")
					}
					assert.True(t, ok, "%s imports %s, which it may not", tc.dir, imp)
				}
			}
		})
	}
}

// importsOf returns the imports of the non-test Go files in dir.
func importsOf(t *testing.T, dir string) []string {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	require.NoError(t, err)
	var out []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		parsed, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		require.NoError(t, err)
		for _, imp := range parsed.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			require.NoError(t, err)
			out = append(out, path)
		}
	}
	return out
}

// standard reports whether path is in the standard library: its first
// element has no dot.
func standard(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

package uowgin_test

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/internal/webtest"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/middleware/uowgin"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// seen is what one request left behind: what the client saw, what the
// database kept, and what gin.Logger printed.
type seen struct {
	Status int
	Body   string
	Rows   int
	Logged int
}

// knownBad are the cases the obvious Gin adapters get wrong (issue 11):
// each handler inserts a row, then answers.
var knownBad = []struct {
	name     string
	deferred bool // the row violates a deferred foreign key: COMMIT fails
	do       func(c *gin.Context)
	want     seen
}{
	{"a handler's JSON 409 rolls back", false, func(c *gin.Context) { c.JSON(409, "full") },
		seen{409, `"full"`, 0, 409}},
	{"AbortWithStatusJSON 422 rolls back", false, func(c *gin.Context) { c.AbortWithStatusJSON(422, gin.H{"error": "invalid"}) },
		seen{422, `{"error":"invalid"}`, 0, 422}},
	{"Status 409 with no body rolls back", false, func(c *gin.Context) { c.Status(409) },
		seen{409, "", 0, 409}},
	{"a failed deferred COMMIT: 500, not 201, and gin.Logger agrees", true, func(c *gin.Context) { c.JSON(201, gin.H{"id": 1}) },
		seen{500, "Internal Server Error\n", 0, 500}},
}

// design builds an application whose route is handler, with gin.Logger
// and gin.Recovery, and some adapter of m.
type design func(m *uow.Manager, log *bytes.Buffer, handler gin.HandlerFunc) http.Handler

// designs are uowgin, and the two designs the issue found wrong.
var designs = map[string]design{
	"uowgin": func(m *uow.Manager, log *bytes.Buffer, handler gin.HandlerFunc) http.Handler {
		r := newLoggedEngine(log, uowgin.Transaction(m))
		r.POST("/", handler)
		return r
	},
	// The net/http middleware run around c.Next(): the handlers keep
	// writing to gin's writer, so the middleware never sees their status.
	"net/http middleware around c.Next()": func(m *uow.Manager, log *bytes.Buffer, handler gin.HandlerFunc) http.Handler {
		mw := nethttp.Transaction(m)
		r := newLoggedEngine(log, func(c *gin.Context) {
			mw(http.HandlerFunc(func(_ http.ResponseWriter, req *http.Request) {
				c.Request = req
				c.Next()
			})).ServeHTTP(c.Writer, c.Request)
		})
		r.POST("/", handler)
		return r
	},
	// The net/http middleware around the whole engine: decided right, but
	// gin.Logger logs the handler's status, not the one that went out.
	"net/http middleware around the engine": func(m *uow.Manager, log *bytes.Buffer, handler gin.HandlerFunc) http.Handler {
		r := newLoggedEngine(log)
		r.POST("/", handler)
		return nethttp.Transaction(m)(r)
	},
}

// run serves one known-bad case through d and returns what it left.
func run(t *testing.T, d design, deferred bool, do func(c *gin.Context)) seen {
	t.Helper()
	env := webtest.NewEnv(t, "gin")
	table, value := env.Table, "(v) VALUES ('x')"
	if deferred {
		table, value = pgtest.DeferredFK(t, env.DB), "VALUES (1)"
	}
	var log bytes.Buffer
	h := d(env.M, &log, func(c *gin.Context) {
		ctx := c.Request.Context()
		if _, err := repo.From(ctx, env.DB).ExecContext(ctx, `INSERT INTO `+table+` `+value); err != nil {
			panic(err)
		}
		do(c)
	})
	res := webtest.Serve(t, h, "POST", "/", "")
	logged, err := strconv.Atoi(strings.Fields(log.String() + " 0")[0])
	require.NoError(t, err)
	return seen{Status: res.Status, Body: res.Body, Rows: webtest.Count(t, env.DB, table), Logged: logged}
}

// TestKnownBadDesigns: uowgin answers every known-bad case right — the
// status the client saw, the rows kept, gin.Logger's status — and the same
// checks catch both designs the issue found wrong, exactly where it said.
func TestKnownBadDesigns(t *testing.T) {
	t.Parallel()
	wrong := map[string]map[string]seen{ // design → case → what it does instead
		"net/http middleware around c.Next()": {
			knownBad[0].name: {409, `"full"`, 1, 409},
			knownBad[1].name: {422, `{"error":"invalid"}`, 1, 422},
			knownBad[2].name: {409, "", 1, 409},
			knownBad[3].name: {201, `{"id":1}Internal Server Error` + "\n", 0, 201},
		},
		"net/http middleware around the engine": {
			knownBad[3].name: {500, "Internal Server Error\n", 0, 201},
		},
	}
	for name, d := range designs {
		for _, tc := range knownBad {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				want, bad := wrong[name][tc.name]
				if !bad {
					want = tc.want
				}
				got := run(t, d, tc.deferred, tc.do)
				assert.Equal(t, want, got, "status and body the client saw, rows kept, status gin.Logger printed")
				if bad {
					assert.NotEqual(t, tc.want, got, "the checks catch this design")
				}
			})
		}
	}
}

package uowgin_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/internal/webtest"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/middleware/uowgin"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// TestMain gives the package a database of its own; pgtest.Main drops it
// afterwards and fails the run if goleak finds a leaked goroutine. Gin's
// test mode keeps its debug lines out of the output.
func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	os.Exit(pgtest.Main(m))
}

// newEngine returns a Gin engine with gin.Recovery outside the given
// middleware, as applications set it up.
func newEngine(mw ...gin.HandlerFunc) *gin.Engine {
	r := gin.New()
	r.Use(gin.RecoveryWithWriter(io.Discard))
	r.Use(mw...)
	return r
}

// newLoggedEngine is newEngine with gin.Logger outside gin.Recovery, as
// gin.Default sets them up, writing "status size" lines to log: what Gin
// believes it answered.
func newLoggedEngine(log *bytes.Buffer, mw ...gin.HandlerFunc) *gin.Engine {
	r := gin.New()
	r.Use(gin.LoggerWithConfig(gin.LoggerConfig{Output: log, Formatter: func(p gin.LogFormatterParams) string {
		return fmt.Sprintf("%d %d\n", p.StatusCode, p.BodySize)
	}}))
	r.Use(gin.RecoveryWithWriter(io.Discard))
	r.Use(mw...)
	return r
}

// hijack answers on the hijacked connection with a raw 200 carrying body.
func hijack(c *gin.Context, body string) error {
	return webtest.HijackReply(c.Writer, body, func() {})
}

// stack serves a shared scenario (internal/webtest) through the
// middleware, with gin.Recovery outside: the handler gets c.Writer and
// c.Request, and records its error with c.Error, which the middleware
// answers with 500 when nothing was written.
func stack(s webtest.Setup) http.Handler {
	var mw []gin.HandlerFunc
	if s.Outer != nil {
		mw = append(mw, func(c *gin.Context) {
			s.Outer(c.Writer, c.Request, func(r *http.Request) {
				c.Request = r
				c.Next()
			})
		})
	}
	r := newEngine(append(mw, uowgin.TransactionWithOptions(s.M, s.Options))...)
	r.Any("/*path", func(c *gin.Context) {
		if err := s.Handler(c.Writer, c.Request); err != nil {
			_ = c.Error(err)
		}
	})
	return r
}

// TestScenarios runs the framework-independent scenarios of
// internal/webtest, one subtest each: the table net/http and Echo run too.
func TestScenarios(t *testing.T) {
	t.Parallel()
	webtest.Scenarios(t, "gin", stack)
}

// TestWritePaths runs every way a Gin handler writes a response, in both
// modes, on a real server, and checks what the client saw, what gin.Logger
// printed and what the database kept. Each handler first inserts one row
// through its unit.
func TestWritePaths(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	cases := []struct {
		name   string
		do     func(e *webtest.Env, c *gin.Context)
		status int
		body   string
		rows   int
	}{
		{"JSON 200", func(_ *webtest.Env, c *gin.Context) { c.JSON(200, "ok") }, 200, `"ok"`, 1},
		{"JSON 201", func(_ *webtest.Env, c *gin.Context) { c.JSON(201, 1) }, 201, "1", 1},
		{"JSON 409", func(_ *webtest.Env, c *gin.Context) { c.JSON(409, "full") }, 409, `"full"`, 0},
		{"JSON 500", func(_ *webtest.Env, c *gin.Context) { c.JSON(500, "oops") }, 500, `"oops"`, 0},
		{"String 201", func(_ *webtest.Env, c *gin.Context) { c.String(201, "made %d", 1) }, 201, "made 1", 1},
		{"String 400", func(_ *webtest.Env, c *gin.Context) { c.String(400, "bad") }, 400, "bad", 0},
		{"Status 204, no body", func(_ *webtest.Env, c *gin.Context) { c.Status(204) }, 204, "", 1},
		{"Status 409, no body", func(_ *webtest.Env, c *gin.Context) { c.Status(409) }, 409, "", 0},
		{"Status 409, then 201", func(_ *webtest.Env, c *gin.Context) { c.Status(409); c.Status(201) }, 201, "", 1},
		{"AbortWithStatus 409", func(_ *webtest.Env, c *gin.Context) { c.AbortWithStatus(409) }, 409, "", 0},
		{"AbortWithStatus 204", func(_ *webtest.Env, c *gin.Context) { c.AbortWithStatus(204) }, 204, "", 1},
		{"AbortWithStatusJSON 422", func(_ *webtest.Env, c *gin.Context) {
			c.AbortWithStatusJSON(422, gin.H{"error": "invalid"})
		}, 422, `{"error":"invalid"}`, 0},
		{"AbortWithStatusPureJSON 201", func(_ *webtest.Env, c *gin.Context) { c.AbortWithStatusPureJSON(201, "<ok>") }, 201, "\"<ok>\"\n", 1},
		{"AbortWithError 409", func(_ *webtest.Env, c *gin.Context) { _ = c.AbortWithError(409, boom) }, 409, "", 0},
		{"Data 201", func(_ *webtest.Env, c *gin.Context) { c.Data(201, "text/plain", []byte("data")) }, 201, "data", 1},
		{"Data 400", func(_ *webtest.Env, c *gin.Context) { c.Data(400, "text/plain", []byte("bad data")) }, 400, "bad data", 0},
		{"Redirect 302", func(_ *webtest.Env, c *gin.Context) { c.Redirect(302, "/elsewhere") }, 302, "", 1},
		{"Stream", func(_ *webtest.Env, c *gin.Context) {
			n := 0
			c.Stream(func(w io.Writer) bool { n++; fmt.Fprintf(w, "chunk %d;", n); return n < 3 })
		}, 200, "chunk 1;chunk 2;chunk 3;", 1},
		{"Status 409, then Stream", func(_ *webtest.Env, c *gin.Context) {
			c.Status(409)
			c.Stream(func(w io.Writer) bool { fmt.Fprint(w, "conflict"); return false })
		}, 409, "conflict", 0},
		{"Writer.Write: an implicit 200", func(_ *webtest.Env, c *gin.Context) { _, _ = c.Writer.Write([]byte("raw")) }, 200, "raw", 1},
		{"Writer.WriteString", func(_ *webtest.Env, c *gin.Context) { _, _ = c.Writer.WriteString("raw") }, 200, "raw", 1},
		{"Writer.WriteHeader 201, then Write", func(_ *webtest.Env, c *gin.Context) {
			c.Writer.WriteHeader(201)
			_, _ = c.Writer.Write([]byte("raw"))
		}, 201, "raw", 1},
		{"Status 201, Writer.WriteHeaderNow", func(_ *webtest.Env, c *gin.Context) {
			c.Status(201)
			c.Writer.WriteHeaderNow()
		}, 201, "", 1},
		{"Status 422, Writer.WriteHeaderNow", func(_ *webtest.Env, c *gin.Context) {
			c.Status(422)
			c.Writer.WriteHeaderNow()
		}, 422, "", 0},
		{"Flush first", func(_ *webtest.Env, c *gin.Context) {
			c.Writer.Flush()
			c.String(200, "late")
		}, 200, "late", 1},
		{"Flush first, then String 500: the 200 has gone", func(_ *webtest.Env, c *gin.Context) {
			c.Writer.Flush()
			c.String(500, "too late to fail")
		}, 200, "too late to fail", 1},
		{"Status 409, then Flush", func(_ *webtest.Env, c *gin.Context) {
			c.Status(409)
			c.Writer.Flush()
		}, 409, "", 0},
		{"Flush through http.ResponseController", func(_ *webtest.Env, c *gin.Context) {
			c.Status(202)
			if err := http.NewResponseController(c.Writer).Flush(); err != nil {
				panic(err)
			}
		}, 202, "", 1},
		{"Hijack", func(_ *webtest.Env, c *gin.Context) {
			if err := hijack(c, "hijacked"); err != nil {
				panic(err)
			}
		}, 200, "hijacked", 1},
		{"writes nothing", func(*webtest.Env, *gin.Context) {}, 200, "", 1},
		{"c.Error only: 500", func(_ *webtest.Env, c *gin.Context) { _ = c.Error(boom) }, 500, "", 0},
		{"c.Error and Status 202: the status set decides", func(_ *webtest.Env, c *gin.Context) {
			_ = c.Error(boom)
			c.Status(202)
		}, 202, "", 1},
		{"c.Error, then JSON 201: the status written decides", func(_ *webtest.Env, c *gin.Context) {
			_ = c.Error(boom)
			c.JSON(201, "anyway")
		}, 201, `"anyway"`, 1},
		{"panic under gin.Recovery", func(*webtest.Env, *gin.Context) { panic("handler panic") }, 500, "", 0},
		{"invalid status: net/http would panic", func(_ *webtest.Env, c *gin.Context) { c.Status(1000) }, 500, "", 0},
		{"103 early hints, then JSON 201", func(_ *webtest.Env, c *gin.Context) {
			c.Header("Link", "</style.css>; rel=preload")
			c.Status(http.StatusEarlyHints)
			c.JSON(201, "created")
		}, 201, `"created"`, 1},
		{"103 early hints, then JSON 400", func(_ *webtest.Env, c *gin.Context) {
			c.Writer.WriteHeader(http.StatusEarlyHints)
			c.JSON(400, "bad")
		}, 400, `"bad"`, 0},
		{"SetRollbackOnly with 200", func(_ *webtest.Env, c *gin.Context) {
			if err := uow.SetRollbackOnly(c.Request.Context()); err != nil {
				panic(err)
			}
			c.String(200, "dry run")
		}, 200, "dry run", 0},
		{"swallowed statement error, then 201", func(e *webtest.Env, c *gin.Context) {
			ctx := c.Request.Context()
			_, _ = repo.From(ctx, e.DB).ExecContext(ctx, `SELECT 1/0`)
			c.String(201, "success")
		}, 500, "Internal Server Error\n", 0},
	}
	for _, mode := range webtest.Modes() {
		for _, tc := range cases {
			t.Run(mode.Name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				env := webtest.NewEnv(t, "gin")
				var log bytes.Buffer
				r := newLoggedEngine(&log, uowgin.TransactionWithOptions(env.M, mode.Options))
				r.POST("/", func(c *gin.Context) {
					if err := env.Insert(c.Request.Context(), "x"); err != nil {
						panic(err)
					}
					tc.do(env, c)
				})
				res := webtest.Serve(t, r, "POST", "/", "")
				assert.Equal(t, tc.status, res.Status, "status the client saw")
				assert.Equal(t, tc.body, res.Body, "body the client saw")
				assert.Equal(t, tc.rows, env.Rows(t), "rows the database kept")
				logStatus := tc.status
				if tc.name == "Hijack" {
					logStatus = 101 // the client read what the handler wrote on the connection
				}
				assert.Equal(t, fmt.Sprint(logStatus), strings.Fields(log.String())[0], "status gin.Logger printed")
				if strings.HasPrefix(tc.name, "103") {
					assert.Equal(t, []int{103}, res.Informational)
				}
			})
		}
	}
}

// TestCommitFailureNeverLooksLikeSuccess makes COMMIT itself fail (a
// deferred foreign key) on every Gin write path: the client gets 500 with
// the failure response only, gin.Logger prints 500 and the body size the
// client got, and nothing is kept.
func TestCommitFailureNeverLooksLikeSuccess(t *testing.T) {
	t.Parallel()
	const secret = `{"secret":"success"}`
	paths := []struct {
		name string
		do   func(c *gin.Context)
	}{
		{"JSON 201", func(c *gin.Context) { c.JSON(201, gin.H{"secret": "success"}) }},
		{"String 200", func(c *gin.Context) { c.String(200, secret) }},
		{"Data 201", func(c *gin.Context) { c.Data(201, "application/json", []byte(secret)) }},
		{"Status 204, no body", func(c *gin.Context) { c.Status(204) }},
		{"AbortWithStatus 201", func(c *gin.Context) { c.AbortWithStatus(201) }},
		{"Stream", func(c *gin.Context) { c.Stream(func(w io.Writer) bool { fmt.Fprint(w, secret); return false }) }},
		{"Writer.Write", func(c *gin.Context) { _, _ = c.Writer.Write([]byte(secret)) }},
		{"Writer.WriteHeaderNow", func(c *gin.Context) { c.Writer.WriteHeaderNow() }},
		{"Flush first", func(c *gin.Context) { c.Writer.Flush(); c.String(200, secret) }},
		{"writes nothing", func(*gin.Context) {}},
		{"Hijack", func(c *gin.Context) {
			if err := hijack(c, secret); !errors.Is(err, nethttp.ErrCommitFailed) {
				panic(fmt.Sprintf("hijack: want ErrCommitFailed, got %v", err))
			}
		}},
	}
	for _, mode := range append(webtest.Modes(), webtest.Mode{Name: "buffer overflow", Options: nethttp.Options{Buffer: 4}}) {
		for _, tc := range paths {
			t.Run(mode.Name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				env := webtest.NewEnv(t, "gin")
				child := pgtest.DeferredFK(t, env.DB)
				var reported webtest.Errors
				opts := mode.Options
				opts.ErrorHandler = reported.Handle
				var log bytes.Buffer
				var inside int // c.Writer.Status() in a middleware inside the unit's
				r := newLoggedEngine(&log, uowgin.TransactionWithOptions(env.M, opts), func(c *gin.Context) {
					c.Next()
					inside = c.Writer.Status()
				})
				r.POST("/", func(c *gin.Context) {
					ctx := c.Request.Context()
					if _, err := repo.From(ctx, env.DB).ExecContext(ctx, `INSERT INTO `+child+` VALUES (1)`); err != nil {
						panic(err)
					}
					tc.do(c)
				})
				res := webtest.Serve(t, r, "POST", "/", "")
				assert.Equal(t, 500, res.Status)
				assert.Equal(t, "Internal Server Error\n", res.Body)
				assert.Equal(t, "text/plain; charset=utf-8", res.Header.Get("Content-Type"))
				assert.Equal(t, "500 22\n", log.String(), "gin.Logger: the status and body size the client got")
				switch {
				case tc.name == "writes nothing", tc.name == "Status 204, no body":
					// Decided after the handlers returned, as gin sends
					// the status then.
				case mode.Options.Buffer == 0 || tc.name == "Flush first" || tc.name == "Hijack":
					// Decided while the handler ran. In buffered mode the
					// decision comes after the middlewares inside return.
					assert.Equal(t, 500, inside, "c.Writer.Status() inside, once the status has gone")
				}
				var ce *uow.CommitError
				assert.ErrorAs(t, reported.One(t), &ce)
				assert.Zero(t, webtest.Count(t, env.DB, child))
			})
		}
	}
}

// TestLoggerAfterAPanicAfterWriting: when a handler panics after writing
// (the shared scenario PanicAfterWriting), gin.Logger prints the status the
// client got: the 200 that went out, streamed or flushed, or gin.Recovery's
// 500 for a buffered response that was dropped.
func TestLoggerAfterAPanicAfterWriting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		opts   nethttp.Options
		flush  bool
		status int
	}{
		{"streaming", nethttp.Options{}, false, 200},
		{"buffered", nethttp.Options{Buffer: 1 << 10}, false, 500},
		{"buffered, flushed", nethttp.Options{Buffer: 1 << 10}, true, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := webtest.NewEnv(t, "gin")
			var log bytes.Buffer
			r := newLoggedEngine(&log, uowgin.TransactionWithOptions(env.M, tc.opts))
			r.POST("/", func(c *gin.Context) {
				if err := env.Insert(c.Request.Context(), "x"); err != nil {
					panic(err)
				}
				c.String(200, "ok")
				if tc.flush {
					c.Writer.Flush()
				}
				panic("after writing")
			})
			assert.Equal(t, tc.status, webtest.Serve(t, r, "POST", "/", "").Status)
			assert.Equal(t, fmt.Sprint(tc.status), strings.Fields(log.String())[0], "status gin.Logger printed")
		})
	}
}

// TestRecoveryInsideTheMiddleware: gin.Recovery registered after the
// unit's middleware answers 500 through it, which rolls back.
func TestRecoveryInsideTheMiddleware(t *testing.T) {
	t.Parallel()
	for _, mode := range webtest.Modes() {
		t.Run(mode.Name, func(t *testing.T) {
			t.Parallel()
			env := webtest.NewEnv(t, "gin")
			r := gin.New()
			r.Use(uowgin.TransactionWithOptions(env.M, mode.Options), gin.RecoveryWithWriter(io.Discard))
			r.POST("/", func(c *gin.Context) {
				if err := env.Insert(c.Request.Context(), "x"); err != nil {
					panic(err)
				}
				panic("handler panic")
			})
			assert.Equal(t, 500, webtest.Serve(t, r, "POST", "/", "").Status)
			assert.Zero(t, env.Rows(t))
		})
	}
}

// TestGinAnswersAfterARollback: a status that rolls back and was not
// written is left to Gin and to middleware further out, once the unit is
// rolled back: Gin's own 404 and 405 pages, and an error renderer further
// out that turns c.Errors into the application's JSON.
func TestGinAnswersAfterARollback(t *testing.T) {
	t.Parallel()
	for _, mode := range webtest.Modes() {
		t.Run(mode.Name+"/404 and 405 pages, as without the middleware", func(t *testing.T) {
			t.Parallel()
			env := webtest.NewEnv(t, "gin")
			run := func(mw ...gin.HandlerFunc) (res []webtest.Response, log string) {
				var buf bytes.Buffer
				r := newLoggedEngine(&buf, mw...)
				r.HandleMethodNotAllowed = true
				r.GET("/teams", func(c *gin.Context) { c.String(200, "teams") })
				res = append(res, webtest.Serve(t, r, "GET", "/nowhere", ""), webtest.Serve(t, r, "POST", "/teams", ""))
				return res, buf.String()
			}
			res, log := run(uowgin.TransactionWithOptions(env.M, mode.Options))
			assert.Equal(t, 404, res[0].Status)
			assert.Equal(t, "404 page not found", res[0].Body)
			assert.Equal(t, 405, res[1].Status)
			assert.Equal(t, "405 method not allowed", res[1].Body)
			assert.Equal(t, "GET", res[1].Header.Get("Allow"))
			bare, bareLog := run()
			for i := range bare {
				res[i].Header.Del("Date")
				bare[i].Header.Del("Date")
			}
			assert.Equal(t, bare, res, "what the client saw, against bare Gin")
			assert.Equal(t, bareLog, log, "what gin.Logger printed, against bare Gin")
		})
		t.Run(mode.Name+"/errors rendered further out", func(t *testing.T) {
			t.Parallel()
			env := webtest.NewEnv(t, "gin")
			var log bytes.Buffer
			render := func(c *gin.Context) {
				c.Next()
				if len(c.Errors) > 0 && !c.Writer.Written() {
					c.JSON(400, gin.H{"error": c.Errors.Last().Error()})
				}
			}
			r := newLoggedEngine(&log, render, uowgin.TransactionWithOptions(env.M, mode.Options))
			r.POST("/", func(c *gin.Context) {
				if err := env.Insert(c.Request.Context(), "x"); err != nil {
					panic(err)
				}
				_ = c.Error(errors.New("name taken"))
			})
			res := webtest.Serve(t, r, "POST", "/", "")
			assert.Equal(t, 400, res.Status)
			assert.Equal(t, `{"error":"name taken"}`, res.Body)
			assert.Equal(t, "application/json; charset=utf-8", res.Header.Get("Content-Type"))
			assert.Equal(t, "400 22\n", log.String())
			assert.Zero(t, env.Rows(t))
		})
	}
}

// TestContextWithFallback: with the engine's ContextWithFallback, a
// repository given c itself as its context.Context finds the request's
// unit; without it, c does not carry the unit (documented: pass
// c.Request.Context()).
func TestContextWithFallback(t *testing.T) {
	t.Parallel()
	for _, mode := range webtest.Modes() {
		t.Run(mode.Name, func(t *testing.T) {
			t.Parallel()
			env := webtest.NewEnv(t, "gin")
			r := newEngine(uowgin.TransactionWithOptions(env.M, mode.Options))
			r.ContextWithFallback = true
			r.POST("/", func(c *gin.Context) {
				if uow.FromContext(c) != uow.FromContext(c.Request.Context()) {
					panic("c does not carry the request's unit")
				}
				if _, err := repo.From(c, env.DB).ExecContext(c, `INSERT INTO `+env.Table+` (v) VALUES ('x')`); err != nil {
					panic(err)
				}
				if c.Query("conflict") != "" {
					c.JSON(409, "full")
					return
				}
				c.Status(201)
			})
			assert.Equal(t, 409, webtest.Serve(t, r, "POST", "/?conflict=1", "").Status)
			assert.Zero(t, env.Rows(t), "409 rolled back the statement made through c")
			assert.Equal(t, 201, webtest.Serve(t, r, "POST", "/", "").Status)
			assert.Equal(t, 1, env.Rows(t))
		})
	}
	t.Run("without ContextWithFallback", func(t *testing.T) {
		t.Parallel()
		r := newEngine(uowgin.Transaction(uow.New(nil)))
		var inC, inRequest *uow.Unit
		r.GET("/", func(c *gin.Context) {
			inC, inRequest = uow.FromContext(c), uow.FromContext(c.Request.Context())
		})
		assert.Equal(t, 200, webtest.Serve(t, r, "GET", "/", "").Status)
		assert.NotNil(t, inRequest)
		assert.Nil(t, inC)
	})
}

func TestAfterTheDecisionRepositoriesFail(t *testing.T) {
	t.Parallel()
	env := webtest.NewEnv(t, "gin")
	var late error
	r := newEngine(uowgin.Transaction(env.M))
	r.POST("/", func(c *gin.Context) {
		c.AbortWithStatus(204)
		late = env.Insert(c.Request.Context(), "x")
	})
	assert.Equal(t, 204, webtest.Serve(t, r, "POST", "/", "").Status)
	require.ErrorIs(t, late, uow.ErrDone)
	assert.Zero(t, env.Rows(t))
}

// TestBufferedRetryRewindsTheChain: in buffered mode a serialization
// failure at COMMIT re-runs every handler after the unit's middleware (a
// middleware in between and the route's handler), replaying the body, and
// none before it (gin.Logger logs once); only the last run's response and
// errors reach the client and Gin.
func TestBufferedRetryRewindsTheChain(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		conflicts int
		status    int
		body      string
		runs      int
		rows      int
	}{
		{"one clean 201 after two conflicts", 2, 201, `{"name":"payload","run":3}`, 3, 1},
		{"attempts exhausted: 503", 5, 503, "Service Unavailable\n", 3, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := webtest.NewEnv(t, "gin")
			webtest.CommitConflicts(t, env.DB, env.Table, tc.conflicts)
			var outer, between, runs atomic.Int64
			var errs int
			var log bytes.Buffer
			r := newLoggedEngine(&log, func(c *gin.Context) {
				outer.Add(1)
				c.Next()
				errs = len(c.Errors)
			}, uowgin.TransactionWithOptions(env.M, nethttp.Options{
				Buffer:       1 << 10,
				ErrorHandler: func(*http.Request, error) {},
				UnitOptions:  webtest.RetryWith(retry.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond}),
			}), func(c *gin.Context) {
				between.Add(1)
				c.Next()
			})
			r.POST("/", func(c *gin.Context) {
				n := runs.Add(1)
				var in struct {
					Name string `json:"name"`
				}
				if err := c.ShouldBindJSON(&in); err != nil { // the body is replayed on every run
					c.AbortWithStatus(400)
					return
				}
				_ = c.Error(fmt.Errorf("run %d", n)) // kept by the last run only
				if err := env.Insert(c.Request.Context(), in.Name); err != nil {
					panic(err)
				}
				c.JSON(201, gin.H{"run": n, "name": in.Name})
			})
			res := webtest.Serve(t, r, "POST", "/", `{"name":"payload"}`)
			assert.Equal(t, tc.status, res.Status)
			assert.Equal(t, tc.body, res.Body)
			assert.EqualValues(t, tc.runs, runs.Load(), "handler runs")
			assert.EqualValues(t, tc.runs, between.Load(), "runs of the middleware in between")
			assert.EqualValues(t, 1, outer.Load(), "runs of the middleware outside")
			assert.Equal(t, 1, errs, "c.Errors further out: the last run's")
			assert.Equal(t, fmt.Sprint(tc.status), strings.Fields(log.String())[0])
			assert.Equal(t, 1, strings.Count(log.String(), "\n"), "gin.Logger logged once")
			assert.Equal(t, tc.rows, env.Rows(t))
		})
	}
}

func TestWriterKeepsItsInterfaces(t *testing.T) {
	t.Parallel()
	for _, mode := range webtest.Modes() {
		t.Run(mode.Name, func(t *testing.T) {
			t.Parallel()
			var got []string
			r := newEngine(uowgin.TransactionWithOptions(uow.New(nil), mode.Options))
			r.GET("/", func(c *gin.Context) {
				w := c.Writer
				_, flusher := w.(http.Flusher)
				_, hijacker := w.(http.Hijacker)
				_, unwrapper := w.(interface{ Unwrap() http.ResponseWriter })
				got = append(got, fmt.Sprint(flusher, hijacker, unwrapper, w.Pusher() == nil, w.CloseNotify() != nil))
				// Found through Unwrap.
				deadline := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Minute))
				got = append(got, fmt.Sprint(deadline))
				c.String(200, "ok")
			})
			assert.Equal(t, 200, webtest.Serve(t, r, "GET", "/", "").Status)
			assert.Equal(t, []string{"true true true true true", "<nil>"}, got)
		})
	}
}

// TestHijackWhereTheConnectionCannotBeHijacked: under a writer that cannot
// hijack (HTTP/2's), Hijack reports http.ErrNotSupported without deciding,
// and the handler can still answer, as under net/http; gin's own writer
// would panic.
func TestHijackWhereTheConnectionCannotBeHijacked(t *testing.T) {
	t.Parallel()
	for _, mode := range webtest.Modes() {
		t.Run(mode.Name, func(t *testing.T) {
			t.Parallel()
			var asked []int // the statuses the commit policy decided on
			opts := mode.Options
			opts.Commit = func(status int) bool { asked = append(asked, status); return status < 400 }
			r := newEngine(uowgin.TransactionWithOptions(uow.New(nil), opts))
			var err error
			r.GET("/", func(c *gin.Context) {
				_, _, err = c.Writer.Hijack()
				c.Status(http.StatusTeapot)
			})
			rec := httptest.NewRecorder() // cannot hijack
			r.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			assert.ErrorIs(t, err, http.ErrNotSupported)
			assert.Equal(t, http.StatusTeapot, rec.Code)
			assert.NotContains(t, asked, http.StatusSwitchingProtocols)
		})
	}
}

func TestMisconfigurationPanicsAtConstruction(t *testing.T) {
	t.Parallel()
	webtest.Misconfiguration(t, "uowgin", stack)
	assert.PanicsWithValue(t, "uowgin: nil *uow.Manager", func() { uowgin.Transaction(nil) })
}

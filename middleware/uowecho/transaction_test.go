package uowecho_test

import (
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

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/internal/webtest"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/middleware/uowecho"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// newEcho returns an Echo with middleware.Recover outside the unit
// middleware, as applications set it up.
func newEcho(mw ...echo.MiddlewareFunc) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Logger.SetOutput(io.Discard)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisablePrintStack: true}))
	e.Use(mw...)
	return e
}

// hijack answers on the hijacked connection with a raw response.
func hijack(c echo.Context, body string) error {
	return webtest.HijackReply(c.Response(), body, func() {})
}

// stack serves a shared scenario (internal/webtest) through the middleware,
// with middleware.Recover outside: the handler gets c.Response() and
// c.Request(), and its error goes to Echo.
func stack(s webtest.Setup) http.Handler {
	var mw []echo.MiddlewareFunc
	if s.Outer != nil {
		mw = append(mw, func(next echo.HandlerFunc) echo.HandlerFunc {
			return func(c echo.Context) (err error) {
				s.Outer(c.Response(), c.Request(), func(r *http.Request) {
					c.SetRequest(r)
					err = next(c)
				})
				return err
			}
		})
	}
	e := newEcho(append(mw, uowecho.TransactionWithOptions(s.M, s.Options))...)
	e.Any("/*", func(c echo.Context) error { return s.Handler(c.Response(), c.Request()) })
	return e
}

// TestScenarios runs the framework-independent scenarios of
// internal/webtest, one subtest each.
func TestScenarios(t *testing.T) {
	t.Parallel()
	webtest.Scenarios(t, "echo", stack)
}

// TestDecisionTable runs every handler behaviour of the decision table in
// both modes, on a real server, and checks what the client saw and what the
// database kept. Each handler first inserts one row through its unit. The
// rows that do not depend on how the handler writes (SetRollbackOnly, a
// swallowed statement error) are the shared scenario SuccessNotCommitted.
func TestDecisionTable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		do     func(e *webtest.Env, c echo.Context) error
		status int
		body   string
		rows   int
	}{
		{"JSON 200", func(_ *webtest.Env, c echo.Context) error { return c.JSON(200, "ok") }, 200, "\"ok\"\n", 1},
		{"JSON 201", func(_ *webtest.Env, c echo.Context) error { return c.JSON(201, 1) }, 201, "1\n", 1},
		{"NoContent 204", func(_ *webtest.Env, c echo.Context) error { return c.NoContent(204) }, 204, "", 1},
		{"Redirect 302", func(_ *webtest.Env, c echo.Context) error { return c.Redirect(302, "/elsewhere") }, 302, "", 1},
		{"JSON 400", func(_ *webtest.Env, c echo.Context) error { return c.JSON(400, "bad") }, 400, "\"bad\"\n", 0},
		{"JSON 404", func(_ *webtest.Env, c echo.Context) error { return c.JSON(404, "gone") }, 404, "\"gone\"\n", 0},
		{"JSON 409", func(_ *webtest.Env, c echo.Context) error { return c.JSON(409, "full") }, 409, "\"full\"\n", 0},
		{"JSON 500", func(_ *webtest.Env, c echo.Context) error { return c.JSON(500, "oops") }, 500, "\"oops\"\n", 0},
		{"return echo.NewHTTPError(409)", func(*webtest.Env, echo.Context) error {
			return echo.NewHTTPError(409, "team is full")
		}, 409, "{\"message\":\"team is full\"}\n", 0},
		{"return a plain error", func(*webtest.Env, echo.Context) error { return errors.New("boom") },
			500, "{\"message\":\"Internal Server Error\"}\n", 0},
		{"return nil without writing", func(*webtest.Env, echo.Context) error { return nil }, 200, "", 1},
		{"panic, recovered outside", func(*webtest.Env, echo.Context) error { panic("handler panic") },
			500, "{\"message\":\"Internal Server Error\"}\n", 0},
		{"invalid status: net/http panics", func(_ *webtest.Env, c echo.Context) error { return c.NoContent(1000) },
			500, "{\"message\":\"Internal Server Error\"}\n", 0},
		{"Flush first", func(_ *webtest.Env, c echo.Context) error {
			c.Response().Flush()
			return c.String(200, "late")
		}, 200, "late", 1},
		{"Flush first, then 500: the 200 has gone", func(_ *webtest.Env, c echo.Context) error {
			c.Response().Flush()
			return c.String(500, "too late to fail")
		}, 200, "too late to fail", 1},
		{"Stream", func(_ *webtest.Env, c echo.Context) error {
			return c.Stream(200, "text/plain", strings.NewReader("streamed"))
		}, 200, "streamed", 1},
		{"Stream 409", func(_ *webtest.Env, c echo.Context) error {
			return c.Stream(409, "text/plain", strings.NewReader("conflict"))
		}, 409, "conflict", 0},
		{"Hijack", func(_ *webtest.Env, c echo.Context) error { return hijack(c, "hijacked") }, 200, "hijacked", 1},
		{"io.Copy into Response", func(_ *webtest.Env, c echo.Context) error {
			_, err := io.Copy(c.Response(), webtest.RawReader{Reader: strings.NewReader("copied")})
			return err
		}, 200, "copied", 1},
		{"io.Copy into Response().Writer (ReadFrom)", func(_ *webtest.Env, c echo.Context) error {
			_, err := io.Copy(c.Response().Writer, webtest.RawReader{Reader: strings.NewReader("copied")})
			return err
		}, 200, "copied", 1},
		{"WriteHeader and Write straight to Response().Writer", func(_ *webtest.Env, c echo.Context) error {
			c.Response().Writer.WriteHeader(201)
			_, err := c.Response().Writer.Write([]byte("raw"))
			return err
		}, 201, "raw", 1},
		{"422 straight to Response().Writer", func(_ *webtest.Env, c echo.Context) error {
			c.Response().Writer.WriteHeader(422)
			return nil
		}, 422, "", 0},
		{"103 early hints to Response().Writer, then JSON 201", func(_ *webtest.Env, c echo.Context) error {
			c.Response().Header().Set("Link", "</style.css>; rel=preload")
			c.Response().Writer.WriteHeader(http.StatusEarlyHints)
			return c.JSON(201, "created")
		}, 201, "\"created\"\n", 1},
		{"103 early hints to Response().Writer, then JSON 400", func(_ *webtest.Env, c echo.Context) error {
			c.Response().Writer.WriteHeader(http.StatusEarlyHints)
			return c.JSON(400, "bad")
		}, 400, "\"bad\"\n", 0},
		{"Before hook changes 200 to 422", func(_ *webtest.Env, c echo.Context) error {
			c.Response().Before(func() { c.Response().Status = 422 })
			return c.String(200, "looks fine")
		}, 422, "looks fine", 0},
		{"Before hook changes 500 to 200", func(_ *webtest.Env, c echo.Context) error {
			c.Response().Before(func() { c.Response().Status = 200 })
			return c.NoContent(500)
		}, 200, "", 1},
	}
	for _, mode := range webtest.Modes() {
		for _, tc := range cases {
			t.Run(mode.Name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				env := webtest.NewEnv(t, "echo")
				e := newEcho(uowecho.TransactionWithOptions(env.M, mode.Options))
				e.POST("/", func(c echo.Context) error {
					if err := env.Insert(c.Request().Context(), "x"); err != nil {
						panic(err)
					}
					return tc.do(env, c)
				})
				res := webtest.Serve(t, e, "POST", "/", "")
				assert.Equal(t, tc.status, res.Status, "status the client saw")
				assert.Equal(t, tc.body, res.Body, "body the client saw")
				assert.Equal(t, tc.rows, env.Rows(t), "rows the database kept")
				if strings.HasPrefix(tc.name, "103") {
					assert.Equal(t, []int{103}, res.Informational)
				}
			})
		}
	}
}

func TestRecoverInsideTheMiddleware(t *testing.T) {
	t.Parallel()
	env := webtest.NewEnv(t, "echo")
	e := echo.New()
	e.Logger.SetOutput(io.Discard)
	e.Use(uowecho.Transaction(env.M), middleware.RecoverWithConfig(middleware.RecoverConfig{DisablePrintStack: true}))
	e.POST("/", func(c echo.Context) error {
		if err := env.Insert(c.Request().Context(), "x"); err != nil {
			return err
		}
		panic("handler panic")
	})
	assert.Equal(t, 500, webtest.Serve(t, e, "POST", "/", "").Status)
	assert.Zero(t, env.Rows(t))
}

// TestOuterMiddlewareSeesWhatTheClientSaw: the handler's error still reaches
// middleware further out (loggers), the error response is written at most
// once and never after a response that went out, and Response.Status is the
// status the client got.
func TestOuterMiddlewareSeesWhatTheClientSaw(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	for _, tc := range []struct {
		name   string
		deferr bool // the commit fails
		do     func(c echo.Context) error
		status int
		body   string
		err    error
		seen   int // Response.Status further out, if not status
	}{
		{"HTTPError", false, func(echo.Context) error { return echo.ErrConflict }, 409, "{\"message\":\"Conflict\"}\n", echo.ErrConflict, 0},
		{"201", false, func(c echo.Context) error { return c.String(201, "created") }, 201, "created", nil, 0},
		{"201, commit fails", true, func(c echo.Context) error { return c.String(201, "created") }, 500, "Internal Server Error\n", nil, 0},
		{"nothing written, commit fails", true, func(echo.Context) error { return nil }, 500, "Internal Server Error\n", nil, 0},
		// An implicit 200 that bypassed Response: the error response must
		// not be glued after it.
		{"Write to Response().Writer, then an error", false, func(c echo.Context) error {
			_, _ = c.Response().Writer.Write([]byte("raw"))
			return boom
		}, 200, "raw", boom, 0},
		{"Flush first, then String 500", false, func(c echo.Context) error {
			c.Response().Flush()
			return c.String(500, "too late to fail")
		}, 200, "too late to fail", nil, 0},
		{"Flush first, then HTTPError", false, func(c echo.Context) error {
			c.Response().Flush()
			return echo.ErrConflict
		}, 200, "", echo.ErrConflict, 0},
		{"io.Copy into Response().Writer, then an error", false, func(c echo.Context) error {
			_, _ = io.Copy(c.Response().Writer, webtest.RawReader{Reader: strings.NewReader("copied")})
			return boom
		}, 200, "copied", boom, 0},
		{"http.Flusher on Response().Writer, then an error", false, func(c echo.Context) error {
			c.Response().Writer.(http.Flusher).Flush()
			return boom
		}, 200, "", boom, 0},
		{"Hijack, then an error: 101 further out", false, func(c echo.Context) error {
			if err := hijack(c, "hijacked"); err != nil {
				return err
			}
			return boom
		}, 200, "hijacked", boom, 101},
	} {
		for _, mode := range webtest.Modes() {
			t.Run(mode.Name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				env := webtest.NewEnv(t, "echo")
				table := env.Table
				if tc.deferr {
					table = pgtest.DeferredFK(t, env.DB)
				}
				var seenStatus int
				var seenErr error
				var handled atomic.Int64
				e := newEcho(func(next echo.HandlerFunc) echo.HandlerFunc {
					return func(c echo.Context) error {
						err := next(c)
						seenStatus, seenErr = c.Response().Status, err
						return err
					}
				}, uowecho.TransactionWithOptions(env.M, mode.Options))
				e.HTTPErrorHandler = func(err error, c echo.Context) {
					handled.Add(1)
					e.DefaultHTTPErrorHandler(err, c)
				}
				e.POST("/", func(c echo.Context) error {
					ctx := c.Request().Context()
					if _, err := repo.From(ctx, env.DB).ExecContext(ctx, `INSERT INTO `+table+` VALUES (1)`); err != nil {
						return err
					}
					return tc.do(c)
				})
				res := webtest.Serve(t, e, "POST", "/", "")
				assert.Equal(t, tc.status, res.Status)
				assert.Equal(t, tc.body, res.Body, "one response, nothing glued after it")
				want := tc.status
				if tc.seen != 0 {
					want = tc.seen
				}
				assert.Equal(t, want, seenStatus, "Response.Status seen further out")
				assert.Equal(t, tc.err, seenErr, "error seen further out")
				if tc.err != nil {
					assert.EqualValues(t, 2, handled.Load(), "inside the unit, then by Echo, which ignores it")
				}
			})
		}
	}
}

func TestAfterTheDecisionRepositoriesFail(t *testing.T) {
	t.Parallel()
	env := webtest.NewEnv(t, "echo")
	var late error
	e := newEcho(uowecho.Transaction(env.M))
	e.POST("/", func(c echo.Context) error {
		if err := c.NoContent(204); err != nil {
			return err
		}
		late = env.Insert(c.Request().Context(), "x")
		return nil
	})
	assert.Equal(t, 204, webtest.Serve(t, e, "POST", "/", "").Status)
	require.ErrorIs(t, late, uow.ErrDone)
	assert.Zero(t, env.Rows(t))
}

// TestCommitFailureNeverLooksLikeSuccess makes COMMIT itself fail (a
// deferred foreign key) on every path a response can take.
func TestCommitFailureNeverLooksLikeSuccess(t *testing.T) {
	t.Parallel()
	const secret = `{"secret":"success"}`
	for _, tc := range []struct {
		name string
		opts nethttp.Options
		do   func(c echo.Context) error
	}{
		{"JSON 201", nethttp.Options{}, func(c echo.Context) error { return c.JSONBlob(201, []byte(secret)) }},
		{"Stream", nethttp.Options{}, func(c echo.Context) error {
			return c.Stream(200, "application/json", strings.NewReader(secret))
		}},
		{"return nil", nethttp.Options{}, func(echo.Context) error { return nil }},
		{"Flush first", nethttp.Options{}, func(c echo.Context) error {
			c.Response().Flush()
			return c.JSONBlob(200, []byte(secret))
		}},
		{"straight to Response().Writer", nethttp.Options{}, func(c echo.Context) error {
			_, err := c.Response().Writer.Write([]byte(secret))
			return err
		}},
		{"io.Copy into Response().Writer (ReadFrom)", nethttp.Options{}, func(c echo.Context) error {
			_, err := io.Copy(c.Response().Writer, webtest.RawReader{Reader: strings.NewReader(secret)})
			return err
		}},
		{"Hijack", nethttp.Options{}, func(c echo.Context) error {
			err := hijack(c, secret)
			if !errors.Is(err, nethttp.ErrCommitFailed) {
				return fmt.Errorf("hijack: want ErrCommitFailed, got %v", err)
			}
			return err
		}},
		{"buffered", nethttp.Options{Buffer: 1 << 16}, func(c echo.Context) error { return c.JSONBlob(201, []byte(secret)) }},
		{"buffered, Flush first", nethttp.Options{Buffer: 1 << 16}, func(c echo.Context) error {
			c.Response().Flush()
			return c.JSONBlob(200, []byte(secret))
		}},
		{"buffered, io.Copy into Response().Writer (ReadFrom)", nethttp.Options{Buffer: 1 << 16}, func(c echo.Context) error {
			_, err := io.Copy(c.Response().Writer, webtest.RawReader{Reader: strings.NewReader(secret)})
			return err
		}},
		{"buffered, Hijack", nethttp.Options{Buffer: 1 << 16}, func(c echo.Context) error {
			err := hijack(c, secret)
			if !errors.Is(err, nethttp.ErrCommitFailed) {
				return fmt.Errorf("hijack: want ErrCommitFailed, got %v", err)
			}
			return err
		}},
		{"buffer overflow", nethttp.Options{Buffer: 4}, func(c echo.Context) error { return c.JSONBlob(201, []byte(secret)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := webtest.NewEnv(t, "echo")
			child := pgtest.DeferredFK(t, env.DB)
			var reported webtest.Errors
			tc.opts.ErrorHandler = reported.Handle
			e := newEcho(uowecho.TransactionWithOptions(env.M, tc.opts))
			e.POST("/", func(c echo.Context) error {
				ctx := c.Request().Context()
				if _, err := repo.From(ctx, env.DB).ExecContext(ctx, `INSERT INTO `+child+` VALUES (1)`); err != nil {
					return err
				}
				return tc.do(c)
			})
			res := webtest.Serve(t, e, "POST", "/", "")
			assert.Equal(t, 500, res.Status)
			assert.Equal(t, "Internal Server Error\n", res.Body)
			assert.Equal(t, "text/plain; charset=utf-8", res.Header.Get("Content-Type"))
			var ce *uow.CommitError
			assert.ErrorAs(t, reported.One(t), &ce)
			assert.Zero(t, webtest.Count(t, env.DB, child))
		})
	}
}

// TestBeforeHooksOfEveryAttempt: in buffered mode with retry, a
// serialization failure at COMMIT re-runs the handler, and c.Bind reads the
// body replayed to each attempt. Each attempt's Response starts afresh, but
// Echo keeps the Before hooks that earlier attempts registered: they run
// too when the final response goes out. (What the client gets otherwise is
// the shared scenario SerializationFailureAtCommit.)
func TestBeforeHooksOfEveryAttempt(t *testing.T) {
	t.Parallel()
	env := webtest.NewEnv(t, "echo")
	webtest.CommitConflicts(t, env.DB, env.Table, 2)
	var reported webtest.Errors
	var attempts atomic.Int64
	e := newEcho(uowecho.TransactionWithOptions(env.M, nethttp.Options{Buffer: 1 << 10, ErrorHandler: reported.Handle,
		UnitOptions: webtest.RetryWith(retry.Policy{MaxAttempts: 5, BaseDelay: time.Millisecond})}))
	e.POST("/", func(c echo.Context) error {
		n := attempts.Add(1)
		var in struct {
			Name string `json:"name"`
		}
		if err := c.Bind(&in); err != nil { // the body is replayed on every attempt
			return err
		}
		if err := env.Insert(c.Request().Context(), in.Name); err != nil {
			return err
		}
		c.Response().Header().Set("X-Attempt", fmt.Sprint(n))
		// Registered on every attempt, so the hook counts attempts rather
		// than set a value.
		c.Response().Before(func() { c.Response().Header().Add("X-Before", "x") })
		return c.JSON(201, map[string]any{"attempt": n, "name": in.Name})
	})
	req := httptest.NewRequest("POST", "/", strings.NewReader(`{"name":"payload"}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	assert.Equal(t, 201, rec.Code)
	assert.Equal(t, "{\"attempt\":3,\"name\":\"payload\"}\n", rec.Body.String())
	assert.EqualValues(t, 3, attempts.Load(), "handler runs")
	assert.Equal(t, "3", rec.Header().Get("X-Attempt"))
	assert.Len(t, rec.Header().Values("X-Before"), 3, "Before hooks of earlier attempts run too")
	assert.Equal(t, 1, env.Rows(t))
	assert.Empty(t, reported.List())
}

func TestWriterKeepsItsInterfaces(t *testing.T) {
	t.Parallel()
	for _, mode := range webtest.Modes() {
		t.Run(mode.Name, func(t *testing.T) {
			t.Parallel()
			env := webtest.NewEnv(t, "echo")
			var got []string
			e := newEcho(uowecho.TransactionWithOptions(env.M, mode.Options))
			e.GET("/", func(c echo.Context) error {
				w := c.Response().Writer
				_, flusher := w.(http.Flusher)
				_, hijacker := w.(http.Hijacker)
				_, readerFrom := w.(io.ReaderFrom)
				_, unwrapper := w.(interface{ Unwrap() http.ResponseWriter })
				got = append(got, fmt.Sprint(flusher, hijacker, readerFrom, unwrapper))
				// Found through Unwrap.
				deadline := http.NewResponseController(c.Response()).SetWriteDeadline(time.Now().Add(time.Minute))
				got = append(got, fmt.Sprint(deadline))
				return c.String(200, "ok")
			})
			assert.Equal(t, 200, webtest.Serve(t, e, "GET", "/", "").Status)
			assert.Equal(t, []string{"true true true true", "<nil>"}, got)
		})
	}
}

func TestMisconfigurationPanicsAtConstruction(t *testing.T) {
	t.Parallel()
	webtest.Misconfiguration(t, "uowecho", stack)
	assert.PanicsWithValue(t, "uowecho: nil *uow.Manager", func() { uowecho.Transaction(nil) })
}

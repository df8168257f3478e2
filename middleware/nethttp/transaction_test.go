package nethttp_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/internal/webtest"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// TestMain gives the package a database of its own; pgtest.Main drops it
// afterwards and fails the run if goleak finds a leaked goroutine.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// recoverer turns a panic into a 500, as an application's outer middleware
// would.
func recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				http.Error(w, "recovered", http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// hijackReply answers on a hijacked connection with a raw response.
func hijackReply(conn net.Conn, rw *bufio.ReadWriter, err error) {
	if err != nil {
		panic(err)
	}
	if err := webtest.Reply(conn, rw, "hijacked"); err != nil {
		panic(err)
	}
}

// stack serves a shared scenario (internal/webtest) through the middleware,
// with a recoverer outside, as applications set it up.
func stack(s webtest.Setup) http.Handler {
	var h http.Handler = nethttp.TransactionWithOptions(s.M, s.Options)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.Handler(w, r); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}))
	if s.Outer != nil {
		inner := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.Outer(w, r, func(r *http.Request) { inner.ServeHTTP(w, r) })
		})
	}
	return recoverer(h)
}

// TestScenarios runs the framework-independent scenarios of
// internal/webtest, one subtest each.
func TestScenarios(t *testing.T) {
	t.Parallel()
	webtest.Scenarios(t, "nethttp", stack)
}

// TestDecisionTable runs every handler behaviour of docs/middleware.md in
// both modes, on a real server, and checks what the client saw and what the
// database kept. Each handler first inserts one row through its unit. The
// rows that do not depend on how the handler writes (SetRollbackOnly, a
// swallowed statement error) are the shared scenario SuccessNotCommitted.
func TestDecisionTable(t *testing.T) {
	t.Parallel()
	writeStatus := func(code int) func(*webtest.Env, http.ResponseWriter, *http.Request) {
		return func(_ *webtest.Env, w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(code)
			fmt.Fprint(w, "body")
		}
	}
	cases := []struct {
		name   string
		do     func(e *webtest.Env, w http.ResponseWriter, r *http.Request)
		status int
		body   string // "" means not checked
		rows   int
	}{
		{"200 implicit", func(_ *webtest.Env, w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") }, 200, "ok", 1},
		{"201", writeStatus(201), 201, "body", 1},
		{"204", func(_ *webtest.Env, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }, 204, "", 1},
		{"302", func(_ *webtest.Env, w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}, 302, "", 1},
		{"400", writeStatus(400), 400, "body", 0},
		{"404", func(_ *webtest.Env, w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, 404, "404 page not found\n", 0},
		{"409", writeStatus(409), 409, "body", 0},
		{"500", func(_ *webtest.Env, w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", 500) }, 500, "boom\n", 0},
		{"no write at all", func(*webtest.Env, http.ResponseWriter, *http.Request) {}, 200, "", 1},
		{"panic", func(*webtest.Env, http.ResponseWriter, *http.Request) { panic("handler panic") }, 500, "recovered\n", 0},
		{"invalid status, net/http panics", func(_ *webtest.Env, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(0) }, 500, "recovered\n", 0},
		{"Flusher flush first", func(_ *webtest.Env, w http.ResponseWriter, _ *http.Request) {
			w.(http.Flusher).Flush()
			fmt.Fprint(w, "late body")
		}, 200, "late body", 1},
		{"ResponseController flush first", func(_ *webtest.Env, w http.ResponseWriter, _ *http.Request) {
			if err := http.NewResponseController(w).Flush(); err != nil {
				panic(err)
			}
			fmt.Fprint(w, "late body")
		}, 200, "late body", 1},
		// The flush sent net/http's 200 and decided: a later status cannot
		// roll back (nor reach the client).
		{"Flusher flush first, then 500", func(_ *webtest.Env, w http.ResponseWriter, _ *http.Request) {
			w.(http.Flusher).Flush()
			http.Error(w, "too late to fail", 500)
		}, 200, "too late to fail\n", 1},
		{"ResponseController flush first, then 500", func(_ *webtest.Env, w http.ResponseWriter, _ *http.Request) {
			if err := http.NewResponseController(w).Flush(); err != nil {
				panic(err)
			}
			http.Error(w, "too late to fail", 500)
		}, 200, "too late to fail\n", 1},
		{"stream", func(_ *webtest.Env, w http.ResponseWriter, _ *http.Request) {
			for i := range 3 {
				fmt.Fprintf(w, "chunk %d\n", i)
				w.(http.Flusher).Flush()
			}
		}, 200, "chunk 0\nchunk 1\nchunk 2\n", 1},
		{"ReadFrom via io.Copy", func(_ *webtest.Env, w http.ResponseWriter, _ *http.Request) {
			_, _ = io.Copy(w, webtest.RawReader{Reader: strings.NewReader("copied")})
		}, 200, "copied", 1},
		{"Hijacker hijack", func(_ *webtest.Env, w http.ResponseWriter, _ *http.Request) {
			hijackReply(w.(http.Hijacker).Hijack())
		}, 200, "hijacked", 1},
		{"ResponseController hijack", func(_ *webtest.Env, w http.ResponseWriter, _ *http.Request) {
			hijackReply(http.NewResponseController(w).Hijack())
		}, 200, "hijacked", 1},
		{"103 early hints then 201", func(_ *webtest.Env, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(201)
		}, 201, "", 1},
		{"103 early hints then 400", func(_ *webtest.Env, w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(400)
		}, 400, "", 0},
	}
	for _, mode := range webtest.Modes() {
		for _, tc := range cases {
			t.Run(mode.Name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				e := webtest.NewEnv(t, "nethttp")
				h := recoverer(nethttp.TransactionWithOptions(e.M, mode.Options)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if err := e.Insert(r.Context(), "x"); err != nil {
						panic(err)
					}
					tc.do(e, w, r)
				})))
				res := webtest.Serve(t, h, "POST", "/", "")
				assert.Equal(t, tc.status, res.Status, "status the client saw")
				if tc.body != "" {
					assert.Equal(t, tc.body, res.Body, "body the client saw")
				}
				assert.Equal(t, tc.rows, e.Rows(t), "rows the database kept")
				if strings.HasPrefix(tc.name, "103") {
					assert.Equal(t, []int{103}, res.Informational)
				}
			})
		}
	}
}

func TestWrappedWriterKeepsItsInterfaces(t *testing.T) {
	t.Parallel()
	for _, mode := range webtest.Modes() {
		t.Run(mode.Name, func(t *testing.T) {
			t.Parallel()
			e := webtest.NewEnv(t, "nethttp")
			var got []string
			h := nethttp.TransactionWithOptions(e.M, mode.Options)(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, flusher := w.(http.Flusher)
				_, hijacker := w.(http.Hijacker)
				_, readerFrom := w.(io.ReaderFrom)
				_, unwrapper := w.(interface{ Unwrap() http.ResponseWriter })
				got = append(got, fmt.Sprint(flusher, hijacker, readerFrom, unwrapper))
				// Found only through Unwrap: neither wrapper forwards it.
				deadline := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Minute))
				got = append(got, fmt.Sprint(deadline))
			}))
			assert.Equal(t, 200, webtest.Serve(t, h, "GET", "/", "").Status)
			assert.Equal(t, []string{"true true true true", "<nil>"}, got)
		})
	}
}

func TestRepositoryAfterTheDecision(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts nethttp.Options
		late error // what the late statement returns
		rows int
	}{
		// WriteHeader decided (committed the first row); the late insert
		// fails instead of autocommitting.
		{"streaming", nethttp.Options{}, uow.ErrDone, 1},
		// A buffered WriteHeader only records the status: the decision waits
		// for the handler to return, so the late insert is in the unit.
		{"buffered", nethttp.Options{Buffer: 1 << 10}, nil, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := webtest.NewEnv(t, "nethttp")
			var late error
			h := nethttp.TransactionWithOptions(e.M, tc.opts)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if err := e.Insert(r.Context(), "before"); err != nil {
					panic(err)
				}
				w.WriteHeader(200)
				late = e.Insert(r.Context(), "after")
			}))
			assert.Equal(t, 200, webtest.Serve(t, h, "POST", "/", "").Status)
			if tc.late == nil {
				assert.NoError(t, late)
			} else {
				assert.ErrorIs(t, late, tc.late)
			}
			assert.Equal(t, tc.rows, e.Rows(t))
		})
	}
}

func TestCommitFailureNeverLooksLikeSuccess(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		opts  nethttp.Options
		write func(w http.ResponseWriter)
	}{
		{"WriteHeader 201", nethttp.Options{}, func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(201)
			fmt.Fprint(w, `{"secret":"success"}`)
		}},
		{"flush first", nethttp.Options{}, func(w http.ResponseWriter) {
			w.(http.Flusher).Flush()
			fmt.Fprint(w, `{"secret":"success"}`)
		}},
		{"implicit 200 by Write", nethttp.Options{}, func(w http.ResponseWriter) {
			fmt.Fprint(w, `{"secret":"success"}`)
		}},
		{"io.Copy (ReadFrom)", nethttp.Options{}, func(w http.ResponseWriter) {
			_, _ = io.Copy(w, webtest.RawReader{Reader: strings.NewReader(`{"secret":"success"}`)})
		}},
		{"hijack", nethttp.Options{}, func(w http.ResponseWriter) {
			_, _, err := w.(http.Hijacker).Hijack()
			if !errors.Is(err, nethttp.ErrCommitFailed) {
				panic(err)
			}
		}},
		{"no write at all", nethttp.Options{}, func(http.ResponseWriter) {}},
		{"ResponseController flush first", nethttp.Options{}, func(w http.ResponseWriter) {
			_ = http.NewResponseController(w).Flush()
			fmt.Fprint(w, `{"secret":"success"}`)
		}},
		{"buffered", nethttp.Options{Buffer: 1 << 16}, func(w http.ResponseWriter) {
			w.WriteHeader(201)
			fmt.Fprint(w, `{"secret":"success"}`)
		}},
		{"buffered, flush first", nethttp.Options{Buffer: 1 << 16}, func(w http.ResponseWriter) {
			w.(http.Flusher).Flush()
			fmt.Fprint(w, `{"secret":"success"}`)
		}},
		{"buffered, io.Copy (ReadFrom)", nethttp.Options{Buffer: 1 << 16}, func(w http.ResponseWriter) {
			_, _ = io.Copy(w, webtest.RawReader{Reader: strings.NewReader(`{"secret":"success"}`)})
		}},
		{"buffered, hijack", nethttp.Options{Buffer: 1 << 16}, func(w http.ResponseWriter) {
			conn, rw, err := http.NewResponseController(w).Hijack()
			if err == nil { // not stopped by the failed commit
				_ = webtest.Reply(conn, rw, `{"secret":"success"}`)
				return
			}
			if !errors.Is(err, nethttp.ErrCommitFailed) {
				panic(err)
			}
		}},
		{"buffer overflow", nethttp.Options{Buffer: 4}, func(w http.ResponseWriter) {
			w.WriteHeader(201)
			fmt.Fprint(w, `{"secret":"success"}`)
		}},
		{"buffer overflow, io.Copy (ReadFrom)", nethttp.Options{Buffer: 4}, func(w http.ResponseWriter) {
			w.WriteHeader(201)
			_, _ = io.Copy(w, webtest.RawReader{Reader: strings.NewReader(`{"secret":"success"}`)})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := webtest.NewEnv(t, "nethttp")
			child := pgtest.DeferredFK(t, e.DB) // the insert below violates it at COMMIT
			var reported webtest.Errors
			tc.opts.ErrorHandler = reported.Handle
			h := nethttp.TransactionWithOptions(e.M, tc.opts)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if _, err := repo.From(r.Context(), e.DB).ExecContext(r.Context(), `INSERT INTO `+child+` VALUES (99)`); err != nil {
					panic(err)
				}
				tc.write(w)
			}))
			res := webtest.Serve(t, h, "POST", "/", "")
			assert.Equal(t, 500, res.Status)
			assert.Equal(t, "Internal Server Error\n", res.Body, "none of the handler's success body")
			assert.Empty(t, res.Header.Get("Retry-After"))
			var ce *uow.CommitError
			assert.ErrorAs(t, reported.One(t), &ce)
			var n int
			require.NoError(t, e.DB.Get(&n, `SELECT count(*) FROM `+child))
			assert.Zero(t, n)
		})
	}
}

func TestRouters(t *testing.T) {
	t.Parallel()
	addPlayer := func(e *webtest.Env, w http.ResponseWriter, r *http.Request, id string) {
		if err := e.Insert(r.Context(), id); err != nil {
			panic(err)
		}
		if id == "full" {
			http.Error(w, "team is full", http.StatusConflict)
			return
		}
		w.WriteHeader(201)
	}
	for _, tc := range []struct {
		name   string
		router func(e *webtest.Env) http.Handler
	}{
		{"http.ServeMux", func(e *webtest.Env) http.Handler {
			mux := http.NewServeMux()
			mux.HandleFunc("POST /teams/{id}/players", func(w http.ResponseWriter, r *http.Request) {
				addPlayer(e, w, r, r.PathValue("id"))
			})
			return nethttp.Transaction(e.M)(mux)
		}},
		{"chi", func(e *webtest.Env) http.Handler {
			r := chi.NewRouter()
			r.Use(nethttp.Transaction(e.M))
			r.Post("/teams/{id}/players", func(w http.ResponseWriter, r *http.Request) {
				addPlayer(e, w, r, chi.URLParam(r, "id"))
			})
			return r
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := webtest.NewEnv(t, "nethttp")
			srv := httptest.NewServer(tc.router(e))
			defer srv.Close()
			assert.Equal(t, 201, webtest.Send(t, srv.URL, "POST", "/teams/7/players", "").Status)
			assert.Equal(t, 409, webtest.Send(t, srv.URL, "POST", "/teams/full/players", "").Status)
			assert.Equal(t, 404, webtest.Send(t, srv.URL, "POST", "/nowhere", "").Status)
			assert.Equal(t, 405, webtest.Send(t, srv.URL, "GET", "/teams/7/players", "").Status)
			var vs []string
			require.NoError(t, e.DB.Select(&vs, `SELECT v FROM `+e.Table+` ORDER BY id`))
			assert.Equal(t, []string{"7"}, vs)
		})
	}
}

func TestBufferedModeLetsRollbacksThrough(t *testing.T) {
	t.Parallel()
	e := webtest.NewEnv(t, "nethttp")
	h := nethttp.TransactionWithOptions(e.M, nethttp.Options{Buffer: 1 << 10})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := e.Insert(r.Context(), "x"); err != nil {
				panic(err)
			}
			w.Header().Set("X-Reason", "full")
			http.Error(w, "team is full", http.StatusConflict)
		}))
	res := webtest.Serve(t, h, "POST", "/", "")
	assert.Equal(t, 409, res.Status)
	assert.Equal(t, "full", res.Header.Get("X-Reason"))
	assert.Equal(t, "team is full\n", res.Body)
	assert.Zero(t, e.Rows(t))
}

func TestMisconfigurationPanicsAtConstruction(t *testing.T) {
	t.Parallel()
	webtest.Misconfiguration(t, "nethttp", stack)
	assert.PanicsWithValue(t, "nethttp: nil *uow.Manager", func() { nethttp.Transaction(nil) })
}

func TestGoexitInHandlerRollsBack(t *testing.T) {
	t.Parallel()
	for _, mode := range webtest.Modes() {
		t.Run(mode.Name, func(t *testing.T) {
			t.Parallel()
			e := webtest.NewEnv(t, "nethttp")
			h := nethttp.TransactionWithOptions(e.M, mode.Options)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if err := e.Insert(r.Context(), "x"); err != nil {
					panic(err)
				}
				runtime.Goexit() // what t.FailNow does in a handler: not a return
			}))
			srv := httptest.NewServer(h)
			defer srv.Close()
			res, err := http.Post(srv.URL, "", nil)
			if err == nil {
				res.Body.Close()
			}
			require.Error(t, err, "net/http drops the connection")
			assert.Zero(t, e.Rows(t))
		})
	}
}

package nethttp_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// Every request gets a lazy unit: a 201 commits what the handler wrote, a 409
// rolls it back.
func ExampleTransaction() {
	db := pgtest.ExampleDB("nethttp_examples")
	defer db.Close()
	db.MustExec(`DROP TABLE IF EXISTS players; CREATE TABLE players (name text)`)
	m := uow.New(db)

	mux := http.NewServeMux()
	mux.HandleFunc("POST /players", func(w http.ResponseWriter, r *http.Request) {
		name, _ := io.ReadAll(r.Body)
		_, err := repo.From(r.Context(), db).ExecContext(r.Context(), `INSERT INTO players VALUES ($1)`, string(name))
		if err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		if string(name) == "eleventh" {
			http.Error(w, "team is full", http.StatusConflict) // rolls the insert back
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	h := nethttp.Transaction(m)(mux)

	for _, name := range []string{"first", "eleventh"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/players", strings.NewReader(name)))
		fmt.Println(name, rec.Code)
	}
	var names []string
	_ = db.Select(&names, `SELECT name FROM players`)
	fmt.Println(names)
	// Output:
	// first 201
	// eleventh 409
	// [first]
}

// Safe methods get read-only units; buffered mode holds each response until
// its unit is finished, so that a serialization failure re-runs the handler
// on a fresh SERIALIZABLE unit instead of reaching the client, by the
// unit's retry policy, as uow's Do would re-run its function.
func ExampleTransactionWithOptions() {
	db := pgtest.ExampleDB("nethttp_examples")
	defer db.Close()
	db.MustExec(`DROP TABLE IF EXISTS counters; CREATE TABLE counters (n int); INSERT INTO counters VALUES (0)`)
	m := uow.New(db)

	mw := nethttp.TransactionWithOptions(m, nethttp.Options{
		UnitOptions: func(r *http.Request) []uow.Option {
			return append(nethttp.ReadOnlySafeMethods(r),
				uow.Isolation(sql.LevelSerializable), uow.Retry(retry.Policy{MaxAttempts: 5}))
		},
		Buffer:       64 << 10,
		ErrorHandler: func(_ *http.Request, err error) { fmt.Println("not committed:", err) },
	})
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := repo.From(r.Context(), db)
		if _, err := q.ExecContext(r.Context(), `UPDATE counters SET n = n + 1`); err != nil {
			w.WriteHeader(http.StatusMethodNotAllowed) // GET: read-only, SQLSTATE 25006
			fmt.Fprint(w, "read-only")
			return
		}
		var n int
		if err := q.GetContext(r.Context(), &n, `SELECT n FROM counters`); err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, n)
	}))

	for _, method := range []string{"POST", "GET", "POST"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, "/counter", nil))
		fmt.Println(method, rec.Code, rec.Body.String())
	}
	// Output:
	// POST 200 1
	// GET 405 read-only
	// POST 200 2
}

// An after-commit hook runs once the response is complete, on a goroutine
// and a context of its own (bounded by HookTimeout): a slow hook never
// delays the 201, and it runs only if the insert committed.
func ExampleOptions_afterCommitHooks() {
	db := pgtest.ExampleDB("nethttp_examples")
	defer db.Close()
	db.MustExec(`DROP TABLE IF EXISTS signups; CREATE TABLE signups (email text)`)
	m := uow.New(db)

	sent := make(chan string)
	h := nethttp.TransactionWithOptions(m, nethttp.Options{HookTimeout: 5 * time.Second})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			if _, err := repo.From(ctx, db).ExecContext(ctx, `INSERT INTO signups VALUES ('ada@example.com')`); err != nil {
				http.Error(w, "internal error", http.StatusInternalServerError)
				return
			}
			_ = uow.AfterCommit(ctx, func(ctx context.Context) error {
				_, bounded := ctx.Deadline()
				sent <- fmt.Sprint("welcome mail sent, deadline: ", bounded) // waits for the reader below
				return nil
			})
			w.WriteHeader(http.StatusCreated)
		}))

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/signups", nil))
	fmt.Println("response", rec.Code) // the hook is still waiting
	fmt.Println(<-sent)
	// Output:
	// response 201
	// welcome mail sent, deadline: true
}

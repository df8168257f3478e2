// Package webtest holds what the HTTP middleware tests share: a table of
// their own in a real database, and a real server to send requests to.
package webtest

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// Env is one test's database, table and manager.
type Env struct {
	DB    *sqlx.DB
	Table string
	M     *uow.Manager
}

// NewEnv opens the database of tag with a fresh items(id, v) table.
func NewEnv(t *testing.T, tag string) *Env {
	t.Helper()
	db := pgtest.Open(t, tag)
	return &Env{DB: db, Table: pgtest.Table(t, db, "items", `id serial PRIMARY KEY, v text`), M: uow.New(db)}
}

// Insert adds a row through the unit in ctx, if any.
func (e *Env) Insert(ctx context.Context, v string) error {
	_, err := repo.From(ctx, e.DB).ExecContext(ctx, `INSERT INTO `+e.Table+` (v) VALUES ($1)`, v)
	return err
}

// Rows counts the table's rows.
func (e *Env) Rows(t *testing.T) int {
	t.Helper()
	var n int
	if err := e.DB.Get(&n, `SELECT count(*) FROM `+e.Table); err != nil {
		t.Fatal(err)
	}
	return n
}

// Serve sends one request to h on a real server and returns the status and
// body the client saw. Redirects are not followed.
func Serve(t *testing.T, h http.Handler, method, path, body string) (int, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// RawReader hides a reader's WriterTo, so that io.Copy goes through the
// destination's ReadFrom.
type RawReader struct{ io.Reader }

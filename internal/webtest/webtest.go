package webtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
	return Count(t, e.DB, e.Table)
}

// Count counts the rows of table.
func Count(t *testing.T, db *sqlx.DB, table string) int {
	t.Helper()
	var n int
	if err := db.Get(&n, `SELECT count(*) FROM `+table); err != nil {
		t.Fatal(err)
	}
	return n
}

// Pair is two databases, each with a table whose deferred foreign key makes
// COMMIT fail on demand, under one manager: the default source on A and
// "audit" on B.
type Pair struct {
	A, B   *sqlx.DB
	TA, TB string
	M      *uow.Manager
}

// NewPair opens the databases of tag+"_a" and tag+"_b".
func NewPair(t *testing.T, tag string) *Pair {
	t.Helper()
	a, b := pgtest.Open(t, tag+"_a"), pgtest.Open(t, tag+"_b")
	return &Pair{A: a, B: b, TA: pgtest.DeferredFK(t, a), TB: pgtest.DeferredFK(t, b), M: uow.New(a, uow.WithSource("audit", b))}
}

// Insert adds a row to A's table, then to B's, through the unit in ctx. The
// row in the database named by violate ("a" or "b") references a missing
// parent, so that database's COMMIT fails; the other row's NULL reference
// satisfies the deferred key.
func (p *Pair) Insert(ctx context.Context, violate string) error {
	for _, s := range []struct {
		db          *sqlx.DB
		child, name string
	}{{p.A, p.TA, "a"}, {p.B, p.TB, "b"}} {
		var v *int
		if violate == s.name {
			v = new(int)
			*v = 99
		}
		if _, err := repo.From(ctx, s.db).ExecContext(ctx, `INSERT INTO `+s.child+` VALUES ($1)`, v); err != nil {
			return err
		}
	}
	return nil
}

// Rows counts the rows kept in A and in B.
func (p *Pair) Rows(t *testing.T) (a, b int) {
	t.Helper()
	return Count(t, p.A, p.TA), Count(t, p.B, p.TB)
}

// CommitConflicts makes the first n COMMITs of transactions that inserted
// into table fail with SQLSTATE 40001, raised by the server from a deferred
// constraint trigger: a serialization failure at COMMIT, on demand.
func CommitConflicts(t *testing.T, db *sqlx.DB, table string, n int) {
	t.Helper()
	CommitFailures(t, db, table, n, "40001")
}

// CommitFailures makes the first n COMMITs of transactions that inserted into
// table fail with the given SQLSTATE, raised by the server from a deferred
// constraint trigger. A sequence counts the failures because it is not rolled
// back with them.
func CommitFailures(t *testing.T, db *sqlx.DB, table string, n int, sqlstate string) {
	t.Helper()
	db.MustExec(fmt.Sprintf(`
CREATE SEQUENCE %[1]s_conflicts;
CREATE FUNCTION %[1]s_conflict() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF nextval('%[1]s_conflicts') <= %[2]d THEN
		RAISE EXCEPTION 'simulated failure at COMMIT' USING ERRCODE = '%[3]s';
	END IF;
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER %[1]s_conflict AFTER INSERT ON %[1]s
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION %[1]s_conflict();`, table, n, sqlstate))
	t.Cleanup(func() {
		_, _ = db.Exec(fmt.Sprintf(`DROP FUNCTION %[1]s_conflict() CASCADE; DROP SEQUENCE %[1]s_conflicts`, table))
	})
}

// Response is what a client saw.
type Response struct {
	Status        int
	Informational []int // 1xx statuses received before the final one
	Header        http.Header
	Body          string
	Trailer       http.Header
}

// Serve sends one request to h on a real server and returns what the client
// saw, once h has returned: a hijacked request may still be served after
// the client has its answer, and loggers further out write last. Redirects
// are not followed.
func Serve(t *testing.T, h http.Handler, method, path, body string) Response {
	t.Helper()
	done := make(chan struct{})
	finished := sync.OnceFunc(func() { close(done) })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer finished()
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	res := Send(t, srv.URL, method, path, body)
	<-done
	return res
}

// Send sends one request to the server at url.
func Send(t *testing.T, url, method, path, body string) Response {
	t.Helper()
	res, err := send(context.Background(), url, method, path, body)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// Sent is the outcome of a request sent by [Go].
type Sent struct {
	Response
	Err error
}

// Go sends one request to the server at url, with ctx, on a goroutine of
// its own, and delivers the outcome on the channel it returns.
func Go(ctx context.Context, url, method, path, body string) <-chan Sent {
	out := make(chan Sent, 1)
	go func() {
		res, err := send(ctx, url, method, path, body)
		out <- Sent{res, err}
	}()
	return out
}

// send sends one request and reads the whole response.
func send(ctx context.Context, url, method, path, body string) (Response, error) {
	var res Response
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
		res.Informational = append(res.Informational, code)
		return nil
	}}
	ctx = httptrace.WithClientTrace(ctx, trace)
	req, err := http.NewRequestWithContext(ctx, method, url+path, strings.NewReader(body))
	if err != nil {
		return res, err
	}
	// A transport of its own: httptest.Server.Close closes the idle
	// connections of http.DefaultTransport, which would break a request of
	// a parallel test reusing one ("CloseIdleConnections called").
	transport := &http.Transport{DisableKeepAlives: true}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r, err := client.Do(req)
	if err != nil {
		return res, err
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return res, err
	}
	res.Status, res.Header, res.Body, res.Trailer = r.StatusCode, r.Header, string(b), r.Trailer
	return res, nil
}

var errNoRequest = errors.New("webtest: hook called without the request")

// Errors collects the errors a middleware's error hook receives, from any
// goroutine.
type Errors struct {
	mu   sync.Mutex
	list []error
}

// Add records err.
func (e *Errors) Add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, err)
}

// Handle records err, as a middleware's error hook: a call without the
// request (an adapter that lost it) is recorded as an error too.
func (e *Errors) Handle(r *http.Request, err error) {
	if r == nil {
		err = errors.Join(err, errNoRequest)
	}
	e.Add(err)
}

// One returns the only error recorded, failing t unless there is exactly
// one and its hook was given the request.
func (e *Errors) One(t *testing.T) error {
	t.Helper()
	list := e.List()
	require.Len(t, list, 1, "errors reported")
	assert.NotErrorIs(t, list[0], errNoRequest)
	return list[0]
}

// List returns the errors recorded so far.
func (e *Errors) List() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]error(nil), e.list...)
}

// RawReader hides a reader's WriterTo, so that io.Copy goes through the
// destination's ReadFrom.
type RawReader struct{ io.Reader }

// PostAll sends one POST per body to the server at url, all at once, and
// returns the responses in the order they completed. A request that fails
// gets Status 0 and the error as Body.
func PostAll(url string, bodies ...string) []Response {
	results := make(chan Response, len(bodies))
	for _, body := range bodies {
		go func() {
			r, err := http.Post(url, "text/plain", strings.NewReader(body))
			if err != nil {
				results <- Response{Body: err.Error()}
				return
			}
			defer r.Body.Close()
			b, err := io.ReadAll(r.Body)
			if err != nil {
				results <- Response{Body: err.Error()}
				return
			}
			results <- Response{Status: r.StatusCode, Header: r.Header, Body: string(b)}
		}()
	}
	out := make([]Response, 0, len(bodies))
	for range bodies {
		out = append(out, <-results)
	}
	return out
}

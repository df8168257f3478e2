package uow_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/jmoiron/sqlx"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// exampleDB opens the package's test database with a notes table.
func exampleDB(table string) *sqlx.DB {
	db := pgtest.ExampleDB("uow_examples")
	db.MustExec(`DROP TABLE IF EXISTS ` + table)
	db.MustExec(`CREATE TABLE ` + table + ` (id serial PRIMARY KEY, body text NOT NULL)`)
	return db
}

// Begin attaches a lazy unit to the context; repositories find it with
// repo.From. Nothing reaches the database before the first statement.
func ExampleManager_Begin() {
	db := exampleDB("notes_begin")
	defer db.Close()
	m := uow.New(db)

	ctx, u := m.Begin(context.Background())
	defer u.Rollback() // a no-op once committed

	_, err := repo.From(ctx, db).ExecContext(ctx, `INSERT INTO notes_begin (body) VALUES ($1)`, "hello")
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := u.Commit(); err != nil {
		fmt.Println(err)
		return
	}
	var n int
	_ = db.Get(&n, `SELECT count(*) FROM notes_begin`)
	fmt.Println("notes:", n)
	// Output: notes: 1
}

// Do commits when the callback returns nil and rolls back on an error.
func ExampleManager_Do() {
	db := exampleDB("notes_do")
	defer db.Close()
	m := uow.New(db)
	add := func(ctx context.Context, body string) error {
		_, err := repo.From(ctx, db).ExecContext(ctx, `INSERT INTO notes_do (body) VALUES ($1)`, body)
		return err
	}

	_ = m.Do(context.Background(), func(ctx context.Context) error { return add(ctx, "kept") })
	err := m.Do(context.Background(), func(ctx context.Context) error {
		if err := add(ctx, "discarded"); err != nil {
			return err
		}
		return errors.New("validation failed")
	})
	fmt.Println(err)

	var bodies []string
	_ = db.Select(&bodies, `SELECT body FROM notes_do ORDER BY id`)
	fmt.Println(bodies)
	// Output:
	// validation failed
	// [kept]
}

// Notes is an application repository; it works on whatever querier it is
// given: a unit's handle here.
type Notes struct{ q repo.Querier }

func (n Notes) Add(ctx context.Context, body string) error {
	_, err := n.q.ExecContext(ctx, `INSERT INTO notes_runner (body) VALUES ($1)`, body)
	return err
}

// Repos is the application's set of repositories, bound to one unit.
type Repos struct{ Notes Notes }

// A Runner hands the callback repositories bound explicitly to the unit. The
// service depends only on uow.Transactor[Repos], which uowtest.Fake also
// implements.
func ExampleRunner() {
	db := exampleDB("notes_runner")
	defer db.Close()
	m := uow.New(db)
	var tx uow.Transactor[Repos] = uow.NewRunner(m, func(u *uow.Unit) Repos {
		return Repos{Notes: Notes{q: u.On(db)}}
	})

	err := tx.Do(context.Background(), func(ctx context.Context, r Repos) error {
		if err := r.Notes.Add(ctx, "first"); err != nil {
			return err
		}
		return uow.AfterCommit(ctx, func(context.Context) error {
			fmt.Println("published after commit")
			return nil
		})
	})
	fmt.Println("err:", err)
	// Output:
	// published after commit
	// err: <nil>
}

// AfterCommit hangs work that must happen only once the data is durable
// (publishing an event, sending an e-mail) off the unit, not off the
// callback's return: it runs after COMMIT succeeded and never for work that
// rolled back. A nested unit (a SAVEPOINT) that rolls back discards the hooks
// registered inside it.
func ExampleAfterCommit() {
	db := exampleDB("notes_hooks")
	defer db.Close()
	m := uow.New(db)
	add := func(ctx context.Context, body string) error {
		if _, err := repo.From(ctx, db).ExecContext(ctx, `INSERT INTO notes_hooks (body) VALUES ($1)`, body); err != nil {
			return err
		}
		return uow.AfterCommit(ctx, func(context.Context) error {
			fmt.Println("published:", body)
			return nil
		})
	}

	err := m.Do(context.Background(), func(ctx context.Context) error {
		if err := add(ctx, "first"); err != nil {
			return err
		}
		// A best-effort step in a savepoint: its failure is swallowed, and so
		// are its row and its hook.
		_ = m.Do(ctx, func(ctx context.Context) error {
			if err := add(ctx, "optional"); err != nil {
				return err
			}
			return errors.New("optional step failed")
		}, uow.Propagate(uow.Nested))
		fmt.Println("callback returned")
		return add(ctx, "second")
	})
	fmt.Println("Do:", err)

	_ = m.Do(context.Background(), func(ctx context.Context) error {
		_ = add(ctx, "rolled back")
		return errors.New("rejected")
	})
	var bodies []string
	_ = db.Select(&bodies, `SELECT body FROM notes_hooks ORDER BY id`)
	fmt.Println(bodies)
	// Output:
	// callback returned
	// published: first
	// published: second
	// Do: <nil>
	// [first second]
}

// NewSlogObserver logs each unit's life: BEGIN, COMMIT and ROLLBACK per
// source at Debug, retries at Warn, failures at Error. An unused unit logs
// nothing, since it never reaches the database.
func ExampleNewSlogObserver() {
	db := exampleDB("notes_observed")
	defer db.Close()
	h := slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "duration" {
				return slog.Attr{} // vary from run to run
			}
			return a
		},
	})
	m := uow.New(db, uow.WithObserver(uow.NewSlogObserver(slog.New(h))))

	_ = m.Do(context.Background(), func(ctx context.Context) error { return nil })
	_ = m.Do(context.Background(), func(ctx context.Context) error {
		_, err := repo.From(ctx, db).ExecContext(ctx, `INSERT INTO notes_observed (body) VALUES ($1)`, "hi")
		return err
	})
	// Output:
	// level=DEBUG msg="uow begin" event=begin source=default
	// level=DEBUG msg="uow commit" event=commit source=default
	// level=DEBUG msg="uow unit" event=unit outcome=committed sources=[default]
}

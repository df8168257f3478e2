package uowpgx_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/uow"
	"github.com/uowkit/uowkit/uowpgx"
)

// A unit spans pgx's own pool: the repository finds the unit's transaction
// through the context, and its work commits or rolls back with the unit.
func Example() {
	ctx := context.Background()
	cfg, _ := pgxpool.ParseConfig(pgtest.ExampleURL("uowpgx_example"))
	uowpgx.Guard(cfg) // the pool refuses statements sent on it inside a unit
	pool, _ := pgxpool.NewWithConfig(ctx, cfg)
	defer pool.Close()
	_, _ = pool.Exec(ctx, `CREATE TABLE notes (body text)`)
	m := uow.New(nil, uowpgx.WithPool("main", pool))

	add := func(ctx context.Context, body string) error {
		_, err := uowpgx.From(ctx, pool).Exec(ctx, `INSERT INTO notes VALUES ($1)`, body)
		return err
	}
	_ = m.Do(ctx, func(ctx context.Context) error { return add(ctx, "kept") })
	_ = m.Do(ctx, func(ctx context.Context) error {
		if err := add(ctx, "undone"); err != nil {
			return err
		}
		return errors.New("something failed later")
	})
	err := m.Do(ctx, func(ctx context.Context) error {
		_, err := pool.Exec(ctx, `INSERT INTO notes VALUES ('trap')`) // the pool, not the unit
		return err
	})
	fmt.Println(errors.Is(err, uow.ErrAutocommit))

	var n int
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM notes`).Scan(&n)
	fmt.Println(n)
	// Output:
	// true
	// 1
}

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

// AdvisoryLock takes a lock that lasts as long as the unit's transaction on
// the pool: safe behind PgBouncer's transaction pooling, unlike a session
// lock. Outside a unit it refuses.
func ExampleAdvisoryLock() {
	ctx := context.Background()
	pool, _ := pgxpool.New(ctx, pgtest.ExampleURL("uowpgx_example"))
	defer pool.Close()
	m := uow.New(nil, uowpgx.WithPool("main", pool))
	const nightlyReport = 727201 // one key per kind of work

	err := m.Do(ctx, func(ctx context.Context) error {
		if err := uowpgx.AdvisoryLock(ctx, pool, nightlyReport); err != nil {
			return err
		}
		// Another instance (here an independent unit) cannot take it now.
		return m.Do(ctx, func(ctx context.Context) error {
			ok, err := uowpgx.TryAdvisoryLock(ctx, pool, nightlyReport)
			fmt.Println("taken elsewhere too:", ok)
			return err
		}, uow.Propagate(uow.RequiresNew))
	})
	fmt.Println("first unit:", err)

	_ = m.Do(ctx, func(ctx context.Context) error {
		ok, err := uowpgx.TryAdvisoryLock(ctx, pool, nightlyReport)
		fmt.Println("free after the commit:", ok)
		return err
	})

	err = uowpgx.AdvisoryLock(ctx, pool, nightlyReport) // no unit in ctx
	fmt.Println("outside a unit:", errors.Is(err, uow.ErrNoUnit))
	// Output:
	// taken elsewhere too: false
	// first unit: <nil>
	// free after the commit: true
	// outside a unit: true
}

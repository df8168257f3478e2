package uow_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/uow"
)

// AdvisoryLock serialises one kind of work across instances of a service,
// for as long as the unit's transaction lasts, and works behind PgBouncer's
// transaction pooling: the lock belongs to the transaction, not to a
// server connection. Outside a unit it refuses, rather than take a session
// lock.
func ExampleAdvisoryLock() {
	db := pgtest.ExampleDB("uow_examples")
	defer db.Close()
	m := uow.New(db)
	ctx := context.Background()
	const nightlyReport = 727201 // one key per kind of work

	err := m.Do(ctx, func(ctx context.Context) error {
		if err := uow.AdvisoryLock(ctx, db, nightlyReport); err != nil {
			return err
		}
		// Another instance (here an independent unit) cannot take it now.
		return m.Do(ctx, func(ctx context.Context) error {
			ok, err := uow.TryAdvisoryLock(ctx, db, nightlyReport)
			fmt.Println("taken elsewhere too:", ok)
			return err
		}, uow.Propagate(uow.RequiresNew))
	})
	fmt.Println("first unit:", err)

	// The commit released it.
	_ = m.Do(ctx, func(ctx context.Context) error {
		ok, err := uow.TryAdvisoryLock(ctx, db, nightlyReport)
		fmt.Println("free after the commit:", ok)
		return err
	})

	err = uow.AdvisoryLock(ctx, db, nightlyReport) // no unit in ctx
	fmt.Println("outside a unit:", errors.Is(err, uow.ErrNoUnit))
	// Output:
	// taken elsewhere too: false
	// first unit: <nil>
	// free after the commit: true
	// outside a unit: true
}

package bank_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/uowkit/uowkit/examples/sqlc/bank"
	"github.com/uowkit/uowkit/examples/sqlc/db"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// A bank on a guarded pool: a transfer is all or nothing.
func Example() {
	pool, err := bank.OpenDB(exampleURL()) // your DSN
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	b := bank.New(uow.New(pool), pool)
	ctx := context.Background()

	alice, _ := b.OpenAccount(ctx, "alice", 100)
	bob, _ := b.OpenAccount(ctx, "bob", 50)
	fmt.Println(b.Transfer(ctx, alice.ID, bob.ID, 30))
	fmt.Println(b.Transfer(ctx, bob.ID, alice.ID, 500))
	fmt.Println(b.Transfer(ctx, alice.ID, 42, 10)) // debits alice, then rolls back

	as, _ := b.Accounts(ctx)
	for _, a := range as {
		fmt.Println(a.Owner, a.Balance)
	}
	// Output:
	// <nil>
	// bank: insufficient funds: account 2
	// bank: no such account: 42
	// alice 70
	// bob 80
}

// The two ways to bind generated queries to a unit: repo.From inside Do,
// and a Runner whose build func hands the unit's handle to db.New.
func Example_twoWays() {
	pool, err := bank.OpenDB(exampleURL())
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	m := uow.New(pool)
	ctx := context.Background()

	err = m.Do(ctx, func(ctx context.Context) error {
		q := db.New(repo.From(ctx, pool))
		if _, err := q.CreateAccount(ctx, db.CreateAccountParams{Owner: "alice", Balance: 10}); err != nil {
			return err
		}
		_, err := q.CreateAccount(ctx, db.CreateAccountParams{Owner: "bob", Balance: 5})
		return err
	})
	fmt.Println("opened:", err)

	tx := uow.NewRunner(m, func(u *uow.Unit) *db.Queries {
		return db.New(u.On(pool))
	})
	err = tx.Do(ctx, func(ctx context.Context, q *db.Queries) error {
		n, err := q.ChargeFee(ctx, 8)
		if err != nil {
			return err
		}
		fmt.Println("paid the fee:", n)
		return errors.New("changed our mind") // rolls the fee back
	})
	fmt.Println("fee:", err)

	as, _ := db.New(pool).ListAccounts(ctx) // no unit: autocommit
	for _, a := range as {
		fmt.Println(a.Owner, a.Balance)
	}
	// Output:
	// opened: <nil>
	// paid the fee: 1
	// fee: changed our mind
	// alice 10
	// bob 5
}

// The trap: inside a unit, the pool given to db.New instead of the unit.
// On a pool from OpenDB (a uow.Guard connector) the statement is refused,
// rather than autocommitted behind the unit's back.
func ExampleOpenDB() {
	pool, err := bank.OpenDB(exampleURL())
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	m := uow.New(pool)
	ctx := context.Background()

	err = m.Do(ctx, func(ctx context.Context) error {
		_, err := db.New(pool).CreateAccount(ctx, db.CreateAccountParams{Owner: "alice", Balance: 1}) // wrong
		fmt.Println("pool inside Do refused:", errors.Is(err, uow.ErrAutocommit))
		_, err = db.New(repo.From(ctx, pool)).CreateAccount(ctx, db.CreateAccountParams{Owner: "bob", Balance: 2}) // right
		return err
	})
	fmt.Println("Do:", err)

	as, _ := db.New(pool).ListAccounts(ctx) // outside a unit the pool works
	for _, a := range as {
		fmt.Println(a.Owner, a.Balance)
	}
	// Output:
	// pool inside Do refused: true
	// Do: <nil>
	// bob 2
}

package bank_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/uowkit/uowkit/examples/sqlcpgx/bank"
	"github.com/uowkit/uowkit/examples/sqlcpgx/db"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/uow"
	"github.com/uowkit/uowkit/uowpgx"
)

// The setup: a guarded pgx pool, a manager whose source it is, and the
// service. Each method is a unit of work; a failed one changes nothing.
func Example() {
	ctx := context.Background()
	pool, err := bank.OpenPool(ctx, exampleURL()) // accounts 1 alice 100, 2 bob 50
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	m := uow.New(nil, uowpgx.WithPool("main", pool))
	b := bank.New(m, pool)

	fmt.Println("transfer:", b.Transfer(ctx, 1, 2, 30))
	err = b.Pay(ctx, 2, []bank.Payment{{To: 1, Amount: 5}, {To: 9, Amount: 5}}) // no account 9
	fmt.Println("pay to a missing account:", errors.Is(err, bank.ErrNoAccount))
	as, _ := b.Accounts(ctx)
	for _, a := range as {
		fmt.Println(a.Owner, a.Balance)
	}
	// Output:
	// transfer: <nil>
	// pay to a missing account: true
	// alice 70
	// bob 80
}

// A COPY joins the unit like any statement: the 1,000 accounts it copied
// are rolled back, all of them, when the unit fails afterwards.
func ExampleBank_Import() {
	ctx := context.Background()
	pool, err := bank.OpenPool(ctx, exampleURL())
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	m := uow.New(nil, uowpgx.WithPool("main", pool))
	b := bank.New(m, pool)

	rows := make([]db.ImportAccountsParams, 1000)
	for i := range rows {
		rows[i] = db.ImportAccountsParams{Owner: fmt.Sprintf("imported-%04d", i), Balance: 1}
	}
	err = m.Do(ctx, func(ctx context.Context) error {
		n, err := b.Import(ctx, rows) // joins this unit
		if err != nil {
			return err
		}
		as, _ := b.Accounts(ctx)
		fmt.Println("imported:", n, "accounts in the unit:", len(as))
		return errors.New("changed our mind")
	})
	fmt.Println("Do:", err)
	as, _ := b.Accounts(ctx) // no unit: autocommit
	fmt.Println("accounts after the rollback:", len(as))
	// Output:
	// imported: 1000 accounts in the unit: 1002
	// Do: changed our mind
	// accounts after the rollback: 2
}

// The trap: inside a unit, the pool given to db.New instead of the unit's
// transaction. On a pool from OpenPool (its config went through
// uowpgx.Guard) the statement is refused, rather than autocommitted behind
// the unit's back.
func ExampleOpenPool() {
	ctx := context.Background()
	pool, err := bank.OpenPool(ctx, exampleURL())
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	m := uow.New(nil, uowpgx.WithPool("main", pool))

	err = m.Do(ctx, func(ctx context.Context) error {
		_, err := db.New(pool).CreateAccount(ctx, db.CreateAccountParams{Owner: "carol", Balance: 1}) // wrong
		fmt.Println("pool inside Do refused:", errors.Is(err, uow.ErrAutocommit))
		_, err = db.New(uowpgx.From(ctx, pool)).CreateAccount(ctx, db.CreateAccountParams{Owner: "dave", Balance: 2}) // right
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
	// alice 100
	// bob 50
	// dave 2
}

// Under the net/http middleware, the bank's methods join the request's unit
// and the response status decides it: 201 commits, 409 rolls back, even a
// payment that went through before the handler chose the status.
func Example_nethttp() {
	ctx := context.Background()
	pool, err := bank.OpenPool(ctx, exampleURL())
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	m := uow.New(nil, uowpgx.WithPool("main", pool))
	b := bank.New(m, pool)

	mux := http.NewServeMux()
	mux.HandleFunc("POST /pay/{status}", func(w http.ResponseWriter, r *http.Request) {
		if err := b.Pay(r.Context(), 1, []bank.Payment{{To: 2, Amount: 10}}); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		if r.PathValue("status") == "409" {
			w.WriteHeader(http.StatusConflict) // paid, but the handler says no
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	h := nethttp.Transaction(m)(mux)

	for _, path := range []string{"/pay/201", "/pay/409"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, nil))
		as, _ := b.Accounts(ctx)
		fmt.Println(path, rec.Code, "alice", as[0].Balance, "bob", as[1].Balance)
	}
	// Output:
	// /pay/201 201 alice 90 bob 60
	// /pay/409 409 alice 90 bob 60
}

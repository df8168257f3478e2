package bank

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/uowkit/uowkit/examples/sqlc/db"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// The bank's errors, for errors.Is. A method failing with one of them has
// changed nothing.
var (
	// ErrNoAccount is returned when an account named in a transfer does
	// not exist.
	ErrNoAccount = errors.New("bank: no such account")
	// ErrInsufficientFunds is returned when the debited account's balance
	// does not cover the amount.
	ErrInsufficientFunds = errors.New("bank: insufficient funds")
	// ErrInvalidAmount is returned for an amount or fee that is not
	// positive.
	ErrInvalidAmount = errors.New("bank: amount must be positive")
)

// OpenDB returns a pool on the PostgreSQL database named by dsn (a lib/pq
// URL or key=value string) whose connections refuse, with an error matching
// uow.ErrAutocommit, any statement sent outside a transaction while its
// context carries a unit: the pool passed where the unit was meant.
// Outside a unit the pool works in autocommit as usual.
func OpenDB(dsn string) (*sqlx.DB, error) {
	c, err := pq.NewConnector(dsn)
	if err != nil {
		return nil, fmt.Errorf("bank: %w", err)
	}
	return sqlx.NewDb(sql.OpenDB(uow.Guard(c)), "postgres"), nil
}

// Bank holds accounts and moves money between them. Each method that writes
// is one unit of work, joining the unit its context carries, if any.
type Bank struct {
	m    *uow.Manager
	pool *sqlx.DB
	tx   *uow.Runner[*db.Queries]
}

// New returns a Bank on pool, which must be one of m's databases (given to
// uow.New or uow.WithSource).
func New(m *uow.Manager, pool *sqlx.DB) *Bank {
	return &Bank{
		m:    m,
		pool: pool,
		tx: uow.NewRunner(m, func(u *uow.Unit) *db.Queries {
			return db.New(u.On(pool))
		}),
	}
}

// OpenAccount creates the account of owner with an opening balance, and
// returns it.
func (b *Bank) OpenAccount(ctx context.Context, owner string, balance int64) (db.Account, error) {
	var a db.Account
	err := b.m.Do(ctx, func(ctx context.Context) error {
		var err error
		a, err = db.New(repo.From(ctx, b.pool)).CreateAccount(ctx, db.CreateAccountParams{Owner: owner, Balance: balance})
		return err
	})
	if err != nil {
		return db.Account{}, err
	}
	return a, nil
}

// ChargeFee takes fee from every account whose balance covers it, and
// returns how many accounts paid.
func (b *Bank) ChargeFee(ctx context.Context, fee int64) (int64, error) {
	if fee <= 0 {
		return 0, ErrInvalidAmount
	}
	var n int64
	err := b.m.Do(ctx, func(ctx context.Context) error {
		var err error
		n, err = db.New(repo.From(ctx, b.pool)).ChargeFee(ctx, fee)
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Accounts returns every account, by id: within the unit ctx carries, if
// any, so that it sees the unit's own writes; otherwise in autocommit.
func (b *Bank) Accounts(ctx context.Context) ([]db.Account, error) {
	return db.New(repo.From(ctx, b.pool)).ListAccounts(ctx)
}

// Transfer moves amount from one account to another and records the
// transfer, all or nothing. It fails with ErrInvalidAmount,
// ErrNoAccount or ErrInsufficientFunds, and then changes nothing.
func (b *Bank) Transfer(ctx context.Context, from, to, amount int64) error {
	if amount <= 0 {
		return ErrInvalidAmount
	}
	return b.tx.Do(ctx, func(ctx context.Context, q *db.Queries) error {
		if err := debit(ctx, q, from, amount); err != nil {
			return err
		}
		// The debit above is rolled back with the unit if this fails.
		n, err := q.AddToBalance(ctx, db.AddToBalanceParams{ID: to, Amount: amount})
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: %d", ErrNoAccount, to)
		}
		return q.CreateTransfer(ctx, db.CreateTransferParams{FromID: from, ToID: to, Amount: amount})
	})
}

// debit takes amount from account id, telling a missing account from a
// short balance when nothing was taken.
func debit(ctx context.Context, q *db.Queries, id, amount int64) error {
	n, err := q.AddToBalance(ctx, db.AddToBalanceParams{ID: id, Amount: -amount})
	if err != nil || n == 1 {
		return err
	}
	_, err = q.GetAccount(ctx, id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: %d", ErrNoAccount, id)
	case err != nil:
		return err
	}
	return fmt.Errorf("%w: account %d", ErrInsufficientFunds, id)
}

// CreditAll adds amount to every account and returns the accounts as
// updated, by id.
func (b *Bank) CreditAll(ctx context.Context, amount int64) ([]db.Account, error) {
	if amount <= 0 {
		return nil, ErrInvalidAmount
	}
	var as []db.Account
	err := b.tx.Do(ctx, func(ctx context.Context, q *db.Queries) error {
		var err error
		as, err = q.CreditAll(ctx, amount)
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(as, func(x, y db.Account) int { return cmp.Compare(x.ID, y.ID) })
	return as, nil
}

package bank

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/uowkit/uowkit/examples/sqlcpgx/db"
	"github.com/uowkit/uowkit/uow"
	"github.com/uowkit/uowkit/uowpgx"
)

// The bank's errors, for errors.Is. A method failing with one of them has
// changed nothing.
var (
	// ErrNoAccount is returned when an account named in a transfer or a
	// payment does not exist.
	ErrNoAccount = errors.New("bank: no such account")
	// ErrInsufficientFunds is returned when the debited account's balance
	// does not cover the amount.
	ErrInsufficientFunds = errors.New("bank: insufficient funds")
	// ErrInvalidAmount is returned for an amount or fee that is not
	// positive, or payments that add up to more than an int64 holds.
	ErrInvalidAmount = errors.New("bank: amount must be positive")
)

// OpenPool returns a pool on the PostgreSQL database named by dsn (a URL or
// key=value string, as pgxpool.ParseConfig takes) that refuses, with an
// error matching uow.ErrAutocommit, any statement sent on the pool itself
// while its context carries an active unit: the pool passed where the
// unit's transaction was meant. Outside a unit the pool works in autocommit
// as usual. ctx governs only the making of the pool.
func OpenPool(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("bank: %w", err)
	}
	uowpgx.Guard(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("bank: %w", err)
	}
	return pool, nil
}

// Bank holds accounts and moves money between them. Each method that writes
// is one unit of work, joining the unit its context carries, if any.
type Bank struct {
	m    *uow.Manager
	pool *pgxpool.Pool
}

// New returns a Bank on pool, which must be one of m's sources (given to
// uow.New with uowpgx.WithPool).
func New(m *uow.Manager, pool *pgxpool.Pool) *Bank {
	return &Bank{m: m, pool: pool}
}

// queries returns the generated queries on the unit ctx carries (its
// transaction on the pool), or on the pool in autocommit without a unit.
func (b *Bank) queries(ctx context.Context) *db.Queries {
	return db.New(uowpgx.From(ctx, b.pool))
}

// OpenAccount creates the account of owner with an opening balance, and
// returns it.
func (b *Bank) OpenAccount(ctx context.Context, owner string, balance int64) (db.Account, error) {
	var a db.Account
	err := b.m.Do(ctx, func(ctx context.Context) error {
		var err error
		a, err = b.queries(ctx).CreateAccount(ctx, db.CreateAccountParams{Owner: owner, Balance: balance})
		return err
	})
	if err != nil {
		return db.Account{}, err
	}
	return a, nil
}

// Import opens the accounts in one COPY, all or none, and returns how many
// it opened. With the unit its context carries, they are rolled back, all
// of them, if that unit fails afterwards.
func (b *Bank) Import(ctx context.Context, accounts []db.ImportAccountsParams) (int64, error) {
	var n int64
	err := b.m.Do(ctx, func(ctx context.Context) error {
		var err error
		n, err = b.queries(ctx).ImportAccounts(ctx, accounts)
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
	return b.queries(ctx).ListAccounts(ctx)
}

// Transfer moves amount from one account to another and records the
// transfer, all or nothing. It fails with ErrInvalidAmount, ErrNoAccount or
// ErrInsufficientFunds, and then changes nothing.
func (b *Bank) Transfer(ctx context.Context, from, to, amount int64) error {
	if amount <= 0 {
		return ErrInvalidAmount
	}
	return b.m.Do(ctx, func(ctx context.Context) error {
		q := b.queries(ctx)
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

// Payment is one credit of a Pay: Amount cents to account To.
type Payment struct {
	To, Amount int64
}

// Pay debits account from by the payments' total and makes every payment,
// sent to the server as one batch, all or nothing. It fails with
// ErrInvalidAmount, ErrNoAccount or ErrInsufficientFunds, and then changes
// nothing.
func (b *Bank) Pay(ctx context.Context, from int64, payments []Payment) error {
	var total int64
	args := make([]db.PayParams, len(payments))
	for i, p := range payments {
		if p.Amount <= 0 || p.Amount > math.MaxInt64-total {
			return ErrInvalidAmount
		}
		total += p.Amount
		args[i] = db.PayParams{FromID: from, ToID: p.To, Amount: p.Amount}
	}
	if total == 0 {
		return ErrInvalidAmount
	}
	return b.m.Do(ctx, func(ctx context.Context) error {
		q := b.queries(ctx)
		if err := debit(ctx, q, from, total); err != nil {
			return err
		}
		var first error
		q.Pay(ctx, args).Exec(func(i int, err error) {
			if err != nil && first == nil {
				first = payError(payments[i], err)
			}
		})
		return first
	})
}

// payError names the payment that failed, telling a missing payee (the
// transfer's foreign key) from other errors.
func payError(p Payment, err error) error {
	var s interface{ SQLState() string }
	if errors.As(err, &s) && s.SQLState() == "23503" { // foreign_key_violation
		return fmt.Errorf("%w: %d (%w)", ErrNoAccount, p.To, err)
	}
	return fmt.Errorf("bank: payment to %d: %w", p.To, err)
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
	case errors.Is(err, pgx.ErrNoRows):
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
	err := b.m.Do(ctx, func(ctx context.Context) error {
		var err error
		as, err = b.queries(ctx).CreditAll(ctx, amount)
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(as, func(x, y db.Account) int { return cmp.Compare(x.ID, y.ID) })
	return as, nil
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
		n, err = b.queries(ctx).ChargeFee(ctx, fee)
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

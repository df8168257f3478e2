package bank_test

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/uowkit/uowkit/examples/sqlcpgx/bank"
	"github.com/uowkit/uowkit/examples/sqlcpgx/db"
)

func TestTransfer(t *testing.T) {
	t.Parallel()
	pool, m := seeded(t)
	if err := bank.New(m, pool).Transfer(context.Background(), 1, 2, 30); err != nil {
		t.Fatal(err)
	}
	if got, want := snapshot(t, pool), "1 alice 70, 2 bob 80 | 1->2 30"; got != want {
		t.Errorf("after the transfer: %q, want %q", got, want)
	}
}

// TestTransferAllOrNothing checks that a failed transfer changes nothing,
// including the debit already made when the credited account turns out not
// to exist.
func TestTransferAllOrNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		from, to, amount int64
		want             error
	}{
		{"insufficient funds", 2, 1, 51, bank.ErrInsufficientFunds},
		{"no debited account", 9, 1, 1, bank.ErrNoAccount},
		{"no credited account, after the debit", 1, 9, 10, bank.ErrNoAccount},
		{"zero amount", 1, 2, 0, bank.ErrInvalidAmount},
		{"negative amount", 1, 2, -5, bank.ErrInvalidAmount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool, m := seeded(t)
			err := bank.New(m, pool).Transfer(context.Background(), tt.from, tt.to, tt.amount)
			if !errors.Is(err, tt.want) {
				t.Errorf("Transfer = %v, want %v", err, tt.want)
			}
			if got := snapshot(t, pool); got != seed {
				t.Errorf("after the failed transfer: %q, want %q", got, seed)
			}
		})
	}
}

func TestPay(t *testing.T) {
	t.Parallel()
	pool, m := seeded(t)
	b := bank.New(m, pool)
	if _, err := b.OpenAccount(context.Background(), "carol", 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Pay(context.Background(), 1, []bank.Payment{{To: 2, Amount: 20}, {To: 3, Amount: 30}, {To: 2, Amount: 5}}); err != nil {
		t.Fatal(err)
	}
	if got, want := snapshot(t, pool), "1 alice 45, 2 bob 75, 3 carol 30 | 1->2 20 1->3 30 1->2 5"; got != want {
		t.Errorf("after the payments: %q, want %q", got, want)
	}
}

// TestPayAllOrNothing checks that a failed Pay changes nothing: not the
// debit, not the payments of the batch that went through before the one
// that failed.
func TestPayAllOrNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		from     int64
		payments []bank.Payment
		want     error
	}{
		{"payee missing, last in the batch", 1, []bank.Payment{{To: 2, Amount: 10}, {To: 2, Amount: 10}, {To: 9, Amount: 10}}, bank.ErrNoAccount},
		{"payee missing, first in the batch", 1, []bank.Payment{{To: 9, Amount: 10}, {To: 2, Amount: 10}}, bank.ErrNoAccount},
		{"insufficient funds", 2, []bank.Payment{{To: 1, Amount: 30}, {To: 1, Amount: 30}}, bank.ErrInsufficientFunds},
		{"no payer", 9, []bank.Payment{{To: 1, Amount: 1}}, bank.ErrNoAccount},
		{"no payments", 1, nil, bank.ErrInvalidAmount},
		{"zero amount", 1, []bank.Payment{{To: 2, Amount: 10}, {To: 2, Amount: 0}}, bank.ErrInvalidAmount},
		{"total overflows", 1, []bank.Payment{{To: 2, Amount: math.MaxInt64}, {To: 2, Amount: 1}}, bank.ErrInvalidAmount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool, m := seeded(t)
			err := bank.New(m, pool).Pay(context.Background(), tt.from, tt.payments)
			if !errors.Is(err, tt.want) {
				t.Errorf("Pay = %v, want %v", err, tt.want)
			}
			if got := snapshot(t, pool); got != seed {
				t.Errorf("after the failed payments: %q, want %q", got, seed)
			}
		})
	}
}

// TestMethodsJoinTheCallersUnit checks that the bank's methods join a unit
// already in the context: they see each other's writes, COPY and batch
// included, and all of them roll back with that unit.
func TestMethodsJoinTheCallersUnit(t *testing.T) {
	t.Parallel()
	pool, m := seeded(t)
	b := bank.New(m, pool)
	err := m.Do(context.Background(), func(ctx context.Context) error {
		c, err := b.OpenAccount(ctx, "carol", 10)
		if err != nil {
			return err
		}
		if n, err := b.Import(ctx, []db.ImportAccountsParams{{Owner: "dave", Balance: 1}}); err != nil || n != 1 {
			t.Errorf("Import = %d, %v; want 1 account", n, err)
		}
		if err := b.Transfer(ctx, 1, c.ID, 20); err != nil {
			return err
		}
		if err := b.Pay(ctx, 2, []bank.Payment{{To: c.ID, Amount: 10}, {To: 4, Amount: 10}}); err != nil {
			return err
		}
		if _, err := b.CreditAll(ctx, 1); err != nil {
			return err
		}
		if n, err := b.ChargeFee(ctx, 60); err != nil || n != 1 {
			t.Errorf("ChargeFee = %d, %v; want 1 account (alice)", n, err)
		}
		as, err := b.Accounts(ctx) // From, no unit of its own
		if err != nil {
			return err
		}
		if len(as) != 4 || as[0].Balance != 21 || as[1].Balance != 31 || as[2].Balance != 41 || as[3].Balance != 12 {
			t.Errorf("inside the caller's unit: %+v, want alice 21, bob 31, carol 41, dave 12", as)
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Errorf("Do = %v, want %v", err, errBoom)
	}
	if got := snapshot(t, pool); got != seed {
		t.Errorf("after the caller's unit rolled back: %q, want %q", got, seed)
	}
}

func TestOpenAccountDuplicateOwner(t *testing.T) {
	t.Parallel()
	pool, m := seeded(t)
	a, err := bank.New(m, pool).OpenAccount(context.Background(), "alice", 5)
	if err == nil {
		t.Errorf("OpenAccount(alice) again = %+v, want the unique violation", a)
	}
	if got := snapshot(t, pool); got != seed {
		t.Errorf("after the failed open: %q, want %q", got, seed)
	}
}

// TestImportDuplicateOwner checks that a COPY failing on its last row
// leaves none of the rows before it.
func TestImportDuplicateOwner(t *testing.T) {
	t.Parallel()
	pool, m := seeded(t)
	n, err := bank.New(m, pool).Import(context.Background(), []db.ImportAccountsParams{{Owner: "carol", Balance: 1}, {Owner: "dave", Balance: 2}, {Owner: "bob", Balance: 3}})
	if err == nil || n != 0 {
		t.Errorf("Import with a duplicate owner = %d, %v; want 0 and the unique violation", n, err)
	}
	if got := snapshot(t, pool); got != seed {
		t.Errorf("after the failed import: %q, want %q", got, seed)
	}
}

func TestAccountsOutsideAUnit(t *testing.T) {
	t.Parallel()
	pool, m := seeded(t)
	as, err := bank.New(m, pool).Accounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 2 || as[0].Owner != "alice" || as[1].Owner != "bob" {
		t.Errorf("Accounts = %+v, want alice and bob", as)
	}
}

func TestCreditAllAndChargeFeeRejectNonPositive(t *testing.T) {
	t.Parallel()
	pool, m := seeded(t)
	b := bank.New(m, pool)
	ctx := context.Background()
	if _, err := b.CreditAll(ctx, 0); !errors.Is(err, bank.ErrInvalidAmount) {
		t.Errorf("CreditAll(0) = %v, want %v", err, bank.ErrInvalidAmount)
	}
	if _, err := b.ChargeFee(ctx, -1); !errors.Is(err, bank.ErrInvalidAmount) {
		t.Errorf("ChargeFee(-1) = %v, want %v", err, bank.ErrInvalidAmount)
	}
}

package bank_test

import (
	"context"
	"errors"
	"testing"

	"github.com/uowkit/uowkit/examples/sqlc/bank"
)

func TestTransfer(t *testing.T) {
	t.Parallel()
	pool, m := seeded(t)
	b := bank.New(m, pool)
	if err := b.Transfer(context.Background(), 1, 2, 30); err != nil {
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

// TestMethodsJoinTheCallersUnit checks that the bank's methods, both ways,
// join a unit already in the context: they see each other's writes, and
// all of them roll back with that unit.
func TestMethodsJoinTheCallersUnit(t *testing.T) {
	t.Parallel()
	pool, m := seeded(t)
	b := bank.New(m, pool)
	err := m.Do(context.Background(), func(ctx context.Context) error {
		c, err := b.OpenAccount(ctx, "carol", 10) // repo.From in Do
		if err != nil {
			return err
		}
		if err := b.Transfer(ctx, 1, c.ID, 20); err != nil { // Runner
			return err
		}
		if _, err := b.CreditAll(ctx, 1); err != nil { // Runner
			return err
		}
		if n, err := b.ChargeFee(ctx, 60); err != nil || n != 1 { // repo.From in Do
			t.Errorf("ChargeFee = %d, %v; want 1 account (alice)", n, err)
		}
		as, err := b.Accounts(ctx) // repo.From, no unit of its own
		if err != nil {
			return err
		}
		if len(as) != 3 || as[0].Balance != 21 || as[1].Balance != 51 || as[2].Balance != 31 {
			t.Errorf("inside the caller's unit: %+v, want alice 21, bob 51, carol 31", as)
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

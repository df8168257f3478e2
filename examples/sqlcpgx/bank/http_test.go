package bank_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/uowkit/uowkit/examples/sqlcpgx/bank"
	"github.com/uowkit/uowkit/examples/sqlcpgx/db"
	"github.com/uowkit/uowkit/middleware/nethttp"
)

// api serves the bank over HTTP, as an application would under the
// middleware: the handlers call the bank's methods, which join the
// request's unit, and the status decides it.
//
//	POST /accounts                {"owner": "carol", "balance": 7}       → 201, 409 for an owner taken
//	POST /imports                 [{"owner": "carol", "balance": 7}, …]  → 201, 409 for an owner taken
//	POST /accounts/{id}/payroll   {"reserve": 50, "payments": [{"to": 2, "amount": 10}, …]}
//	                              → 201, or 409 when the payer is left with less than the reserve:
//	                                the payments went through, and the 409 rolls them back.
func api(b *bank.Bank) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /accounts", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Owner   string
			Balance int64
		}
		if !decode(w, r, &req) {
			return
		}
		a, err := b.OpenAccount(r.Context(), req.Owner, req.Balance)
		if err != nil {
			fail(w, err)
			return
		}
		reply(w, http.StatusCreated, a)
	})
	mux.HandleFunc("POST /imports", func(w http.ResponseWriter, r *http.Request) {
		var req []db.ImportAccountsParams
		if !decode(w, r, &req) {
			return
		}
		n, err := b.Import(r.Context(), req)
		if err != nil {
			fail(w, err)
			return
		}
		reply(w, http.StatusCreated, map[string]int64{"imported": n})
	})
	mux.HandleFunc("POST /accounts/{id}/payroll", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil {
			http.Error(w, "bad account id", http.StatusBadRequest)
			return
		}
		var req struct {
			Reserve  int64
			Payments []bank.Payment
		}
		if !decode(w, r, &req) {
			return
		}
		if err := b.Pay(r.Context(), id, req.Payments); err != nil {
			fail(w, err)
			return
		}
		// Read within the request's unit: the payments are there, not yet
		// committed. A 409 now rolls them back.
		as, err := b.Accounts(r.Context())
		if err != nil {
			fail(w, err)
			return
		}
		for _, a := range as {
			if a.ID == id && a.Balance < req.Reserve {
				http.Error(w, fmt.Sprintf("payroll would leave %d, below the reserve of %d", a.Balance, req.Reserve), http.StatusConflict)
				return
			}
		}
		w.WriteHeader(http.StatusCreated)
	})
	return mux
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// fail maps the bank's errors, and a unique violation, to 409 Conflict;
// anything else is a 500.
func fail(w http.ResponseWriter, err error) {
	var s interface{ SQLState() string }
	switch {
	case errors.Is(err, bank.ErrInsufficientFunds), errors.Is(err, bank.ErrNoAccount),
		errors.As(err, &s) && s.SQLState() == "23505": // unique_violation
		http.Error(w, err.Error(), http.StatusConflict)
	case errors.Is(err, bank.ErrInvalidAmount):
		http.Error(w, err.Error(), http.StatusBadRequest)
	default:
		http.Error(w, "internal error", http.StatusInternalServerError)
	}
}

// importBody is the JSON of n accounts to import, "imported-0000" … with
// balances 0 … n-1.
func importBody(n int) string {
	as := make([]db.ImportAccountsParams, n)
	for i := range as {
		as[i] = db.ImportAccountsParams{Owner: fmt.Sprintf("imported-%04d", i), Balance: int64(i)}
	}
	b, err := json.Marshal(as)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestUnderTheMiddleware runs the bank behind nethttp.Transaction: a
// request answered 201 commits everything its handler wrote (COPY and
// batch included), one answered 409 rolls it all back, even the writes
// that succeeded before the handler chose the status.
func TestUnderTheMiddleware(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, path, body string
		status           int
		after            string // the snapshot once the request is over
	}{
		{"open account: 201 commits", "/accounts", `{"owner": "carol", "balance": 7}`,
			http.StatusCreated, "1 alice 100, 2 bob 50, 3 carol 7 |"},
		{"owner taken: 409", "/accounts", `{"owner": "alice", "balance": 7}`,
			http.StatusConflict, seed},
		{"import 1,000: 201 commits", "/imports", importBody(1000),
			http.StatusCreated, "1002 accounts, total 499650 |"},
		{"import with an owner taken: 409", "/imports", `[{"owner": "carol", "balance": 1}, {"owner": "bob", "balance": 1}]`,
			http.StatusConflict, seed},
		{"payroll: 201 commits", "/accounts/1/payroll", `{"reserve": 50, "payments": [{"to": 2, "amount": 20}, {"to": 2, "amount": 5}]}`,
			http.StatusCreated, "1 alice 75, 2 bob 75 | 1->2 20 1->2 5"},
		{"payroll below the reserve: 409 rolls back what was paid", "/accounts/1/payroll", `{"reserve": 90, "payments": [{"to": 2, "amount": 20}, {"to": 2, "amount": 5}]}`,
			http.StatusConflict, seed},
		{"payroll to a missing payee: 409", "/accounts/1/payroll", `{"payments": [{"to": 2, "amount": 20}, {"to": 9, "amount": 5}]}`,
			http.StatusConflict, seed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool, m := seeded(t)
			h := nethttp.Transaction(m)(api(bank.New(m, pool)))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, tt.path, strings.NewReader(tt.body)))
			if rec.Code != tt.status {
				t.Errorf("POST %s = %d %q, want %d", tt.path, rec.Code, rec.Body, tt.status)
			}
			if got := snapshot(t, pool); got != tt.after {
				t.Errorf("after the request: %q, want %q", got, tt.after)
			}
		})
	}
}

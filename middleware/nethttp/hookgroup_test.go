package nethttp_test

import (
	"context"
	"database/sql"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/nopdriver"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// A server waits for the hooks still running after their responses at
// shutdown through Options.HookGroup.
func TestHookGroupCountsHooksRunningAfterTheResponse(t *testing.T) {
	db := sqlx.NewDb(sql.OpenDB(nopdriver.Connector{}), "postgres")
	defer db.Close()
	m := uow.New(db)
	var group sync.WaitGroup
	release := make(chan struct{})
	h := nethttp.TransactionWithOptions(m, nethttp.Options{HookGroup: &group})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := repo.From(r.Context(), db).ExecContext(r.Context(), `INSERT`)
		require.NoError(t, err)
		require.NoError(t, uow.AfterCommit(r.Context(), func(context.Context) error { <-release; return nil }))
		w.WriteHeader(http.StatusCreated)
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	require.Equal(t, http.StatusCreated, rec.Code, "the response went out while the hook waits")

	drained := make(chan struct{})
	go func() { group.Wait(); close(drained) }()
	select {
	case <-drained:
		t.Fatal("HookGroup.Wait returned while a hook was still running")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-drained
}

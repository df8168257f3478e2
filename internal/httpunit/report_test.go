package httpunit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/uow"
)

func TestDefaultReportLevels(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		level string
	}{
		{"client left", fmt.Errorf("uow: commit: %w", context.Canceled), "INFO"},
		{"deadline", fmt.Errorf("uow: unit already finished: %w", context.DeadlineExceeded), "WARN"},
		{"failed COMMIT", &uow.CommitError{Failed: "default", Err: errors.New("pq: deferred constraint")}, "ERROR"},
		{"partial commit, even if cancelled", &uow.CommitError{Committed: []string{"default"}, Failed: "audit", Err: context.Canceled}, "ERROR"},
		{"statement error", fmt.Errorf("%w: pq: division by zero", uow.ErrRollbackOnly), "ERROR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := slog.New(slog.NewJSONHandler(&buf, nil))
			logReport(l, httptest.NewRequest("POST", "/teams", nil), tc.err)
			var rec map[string]any
			require.NoError(t, json.Unmarshal(buf.Bytes(), &rec))
			assert.Equal(t, tc.level, rec["level"])
			assert.Equal(t, "POST", rec["method"])
			assert.Equal(t, "/teams", rec["path"])
			assert.Equal(t, tc.err.Error(), rec["error"])
		})
	}
}

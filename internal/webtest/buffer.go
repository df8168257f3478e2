package webtest

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/uow"
)

// bufferOverflow checks that a buffered response larger than Buffer (64)
// falls back to streaming: the status is decided before its first byte goes
// out, 201 committing and 409 rolling back, and the whole body and the
// headers set before it still reach the client, whether the handler writes
// in pieces of 10 bytes or copies the body with io.Copy (through the
// writer's ReadFrom where it has one). Once streaming has begun, the unit is
// decided: a later statement fails with uow.ErrDone.
func bufferOverflow(t *testing.T, tag string, stack Stack) {
	t.Helper()
	big := strings.Repeat("0123456789", 100)
	for _, tc := range []struct {
		name   string
		status int
		copy   bool // io.Copy rather than Writes of 10 bytes
		rows   int
	}{
		{"201 commits before the first byte", 201, false, 1},
		{"409 rolls back, body goes through", 409, false, 0},
		{"io.Copy: 201 commits before the first byte", 201, true, 1},
		{"io.Copy: 409 rolls back, body goes through", 409, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := NewEnv(t, tag)
			var overflowed error
			h := stack(Setup{M: e.M, Options: nethttp.Options{Buffer: 64}, Handler: func(w http.ResponseWriter, r *http.Request) error {
				if err := e.Insert(r.Context(), "x"); err != nil {
					return err
				}
				w.Header().Set("X-Kept", "yes")
				w.WriteHeader(tc.status)
				if tc.copy {
					if _, err := io.Copy(w, RawReader{Reader: strings.NewReader(big)}); err != nil {
						return err
					}
				}
				for i := 0; i < len(big) && !tc.copy; i += 10 {
					if _, err := fmt.Fprint(w, big[i:i+10]); err != nil {
						return err
					}
				}
				// Streaming began at the overflow: the unit is decided.
				overflowed = e.Insert(r.Context(), "late")
				return nil
			}})
			res := Serve(t, h, "POST", "/", "")
			assert.Equal(t, tc.status, res.Status)
			assert.Equal(t, big, res.Body)
			assert.Equal(t, "yes", res.Header.Get("X-Kept"))
			assert.ErrorIs(t, overflowed, uow.ErrDone)
			assert.Equal(t, tc.rows, e.Rows(t))
		})
	}
}

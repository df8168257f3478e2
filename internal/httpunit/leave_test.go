package httpunit

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/uowkit/uowkit/uow"
)

// TestLeave: a status the commit policy rejects is decided when Leave is
// called (streaming) or when the handler returns (buffered), and nothing
// is written: the caller answers. A status that commits is not left.
func TestLeave(t *testing.T) {
	for _, buffer := range []int{0, 64} {
		for _, tc := range []struct {
			name   string
			status int
			left   bool
		}{
			{"404 is left", http.StatusNotFound, true},
			{"200 commits: not left", http.StatusOK, false},
		} {
			var asked []int // the statuses the commit policy decided on
			c := New("adapter", uow.New(nil), Options{Buffer: buffer, Commit: func(status int) bool {
				asked = append(asked, status)
				return status < 400
			}})
			rec := httptest.NewRecorder()
			var got calls
			c.Serve(rec, httptest.NewRequest("GET", "/", nil), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("X-Handler", "yes")
				left := Leave(w, tc.status)
				assert.Equal(t, tc.left, left, "buffer %d, %s", buffer, tc.name)
				if !left {
					w.WriteHeader(tc.status)
				}
			}), &got)
			if tc.left {
				assert.False(t, rec.Flushed, "buffer %d, %s: nothing written", buffer, tc.name)
				assert.Nil(t, got, "buffer %d, %s: nothing sent", buffer, tc.name)
				assert.Equal(t, "yes", rec.Header().Get("X-Handler"), "buffer %d, %s: the handler's headers are the caller's", buffer, tc.name)
			} else {
				assert.Equal(t, calls{"sent 200"}, got[len(got)-1:], "buffer %d, %s", buffer, tc.name)
			}
			assert.NotEmpty(t, asked, "buffer %d, %s: decided", buffer, tc.name)
			for _, s := range asked {
				assert.Equal(t, tc.status, s, "buffer %d, %s: decided on the status", buffer, tc.name)
			}
		}
	}
}

// TestLeaveOnAnotherWriter: Leave leaves nothing on a writer that is not
// the middleware's.
func TestLeaveOnAnotherWriter(t *testing.T) {
	assert.False(t, Leave(httptest.NewRecorder(), http.StatusNotFound))
}

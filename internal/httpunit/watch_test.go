package httpunit

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/uowkit/uowkit/uow"
)

// calls records what a Watcher is told.
type calls []string

func (c *calls) Held(status int) { *c = append(*c, fmt.Sprint("held ", status)) }
func (c *calls) Sent(status int) { *c = append(*c, fmt.Sprint("sent ", status)) }

// TestWatcherIsToldOfTheStatus checks the Held and Sent calls of handlers
// that never touch the database (so the unit commits without one): Sent
// once, with the first final status that goes out, on every path; Held in
// buffered mode, when the handler fixes its status.
func TestWatcherIsToldOfTheStatus(t *testing.T) {
	for _, tc := range []struct {
		name   string
		buffer int
		do     func(w http.ResponseWriter)
		want   calls
	}{
		{"WriteHeader", 0, func(w http.ResponseWriter) { w.WriteHeader(201); w.WriteHeader(202) }, calls{"sent 201"}},
		{"Write", 0, func(w http.ResponseWriter) { fmt.Fprint(w, "x"); w.WriteHeader(500) }, calls{"sent 200"}},
		{"Flush", 0, func(w http.ResponseWriter) { w.(http.Flusher).Flush() }, calls{"sent 200"}},
		{"103, then 204", 0, func(w http.ResponseWriter) { w.WriteHeader(103); w.WriteHeader(204) }, calls{"sent 204"}},
		{"nothing written: net/http answers", 0, func(http.ResponseWriter) {}, nil},
		{"buffered WriteHeader", 64, func(w http.ResponseWriter) { w.WriteHeader(201); fmt.Fprint(w, "x") }, calls{"held 201", "sent 201"}},
		{"buffered Write", 64, func(w http.ResponseWriter) { fmt.Fprint(w, "x"); w.WriteHeader(500) }, calls{"held 200", "sent 200"}},
		{"buffered Flush", 64, func(w http.ResponseWriter) { w.WriteHeader(202); w.(http.Flusher).Flush() }, calls{"held 202", "sent 202"}},
		{"buffer overflow", 1, func(w http.ResponseWriter) { fmt.Fprint(w, "xx") }, calls{"held 200", "sent 200"}},
		{"buffered, nothing written", 64, func(http.ResponseWriter) {}, calls{"sent 200"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New("test", uow.New(nil), Options{Buffer: tc.buffer})
			var got calls
			c.Serve(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				tc.do(w)
			}), &got)
			assert.Equal(t, tc.want, got)
		})
	}
}

// Command hellouow is cmd/hello with its handler wrapped in uowkit's
// net/http middleware: scripts/bench-size.sh compares the two binaries to
// measure what importing uow and middleware/nethttp adds, and checks that
// no database driver comes with them.
package main

import (
	"log"
	"net/http"
	"os"

	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/uow"
)

func main() {
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	// No database: the handler never runs a statement, and a manager
	// without one still gives every request its (unused) unit.
	m := uow.New(nil)
	log.Fatal(http.ListenAndServe(addr, nethttp.Transaction(m)(hello())))
}

func hello() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("hello\n"))
	})
}

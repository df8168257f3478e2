package httpunit

import "net/http"

// Leave is for an adapter whose framework answers after the middleware when
// the handler wrote nothing: Gin writes its 404 page then, and a middleware
// further out may render the errors a handler recorded. w is the writer
// Serve gave the handler, and status the one the framework will send.
//
// If nothing has been written to w and the commit policy rejects status,
// Leave decides the unit on status (it rolls back) and returns true: when
// the handler returns, the middleware writes nothing, and the response is
// the caller's to write, after the middleware. Nothing committed, so a
// status that goes out later tells the truth. Otherwise it returns false
// and changes nothing: a status that commits must go out through w, so
// that the commit comes first and nothing further out can change it.
//
// In buffered mode the decision is made when the handler returns, as for
// any response, and a retry policy may still re-run the handler.
func Leave(w http.ResponseWriter, status int) bool {
	switch t := w.(type) {
	case *streamWriter:
		return t.leave(status)
	case *bufferWriter:
		return t.leave(status)
	}
	return false
}

func (s *streamWriter) leave(status int) bool {
	if s.done || s.c.commits(status) {
		return false
	}
	s.decide(status) // a rollback: nothing is replaced, nothing written
	return true
}

func (b *bufferWriter) leave(status int) bool {
	if b.status != 0 || b.streaming || b.c.commits(status) {
		return false
	}
	b.left = status
	return true
}

// Package httpunit is the decision both HTTP middlewares share: given the
// status a handler is about to send, finish the request's unit and say what
// the client must see instead, if anything.
package httpunit

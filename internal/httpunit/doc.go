// Package httpunit is what the HTTP middlewares (middleware/nethttp,
// middleware/uowecho and middleware/uowgin) share: their options, validated once ([New]), and
// serving one request in a unit ([Config.Serve]): deciding the unit's fate
// once, when the status becomes known, and saying what the client must see
// instead, if anything.
//
// The files follow the ideas: options.go (the options, their validation and
// defaults), decide.go (status → commit or rollback, and the response that
// replaces a handler's after a failed commit), serve.go (streaming mode and
// its writer), buffer.go (buffered mode and the retry by the unit's own
// policy), leave.go (a response left to a framework that answers after the
// middleware), hooks.go (the units' hooks, run after the response).
package httpunit

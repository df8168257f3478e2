// Package projection is the query side's projector: it consumes the
// service's events from JetStream (a durable consumer on the stream
// events.Stream) and applies each one once to the read model (team_view,
// roster_view, team_history), through the outbox's Inbox: the event's id
// and its effects commit together, and the message is acknowledged only
// after that commit. It runs inside the service (package app) and as the
// command examples/webapp/cmd/projector.
package projection

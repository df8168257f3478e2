// Package app wires the example service together: database, unit-of-work
// manager, repositories, service, HTTP, NATS (embedded or
// external), the outbox relay and the projector.
package app

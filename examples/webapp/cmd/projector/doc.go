// Command projector runs the example service's projector on its own, for
// scale-out: the same code as the one the service runs in its process
// (package projection), on the same durable consumer, so that the server
// spreads the events among every projector running.
//
//	DATABASE_URL=postgres://... NATS_URL=nats://127.0.0.1:4222 go run ./examples/webapp/cmd/projector
//
// DATABASE_URL (or SQLITE_PATH) names the service's database, NATS_URL the
// NATS server the service publishes to (required: a projector has nothing
// to consume from an embedded server of its own); LOG_LEVEL as the
// service's. It stops on SIGINT or SIGTERM, once the event in flight has
// committed and been acknowledged.
package main

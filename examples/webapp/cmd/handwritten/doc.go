// Command handwritten serves POST /teams/{id}/players written by hand, with
// BeginTx/Commit and no uowkit: the baseline for the example service's load
// measurement (see docs/getting-started.md). Same schema, same statements,
// same locking, same responses.
//
//	DATABASE_URL=postgres://... ADDR=:8081 go run ./examples/webapp/cmd/handwritten
package main

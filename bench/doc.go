// Package bench compares what a unit of work costs in CPU and allocations:
// uowkit, avito-tech/go-transaction-manager (trm) and the same work written by
// hand with sqlx, all on [nopdriver], a database/sql driver that does no I/O,
// so that each library's own cost shows instead of the round trip.
//
// The benchmarks live in the test files; run them interleaved with
// scripts/bench-core.sh, which builds the test binary once and alternates
// the order of the implementations between rounds (-count does not
// interleave). The programs under cmd/ measure what importing uowkit adds
// to a binary (scripts/bench-size.sh).
//
// # Cases
//
// Each implementation has one benchmark function whose sub-benchmarks are the
// cases, so that one -test.bench pattern selects one implementation:
//
//   - 1_INSERT: a unit with one INSERT.
//   - 5_INSERTs: a unit with five INSERTs.
//   - nested_savepoint: an outer unit with one INSERT, then a nested unit (a
//     savepoint) with one INSERT, released, then COMMIT.
//   - empty_unit: a unit that runs no statement (hand-written has none).
//   - no-DB_request: a net/http request that never touches the database;
//     BenchmarkHand serves it with the bare handler, BenchmarkUowkit wraps the
//     handler in the streaming middleware nethttp.Transaction (trm has none).
//
// Every statement goes through the repository's way of finding its querier
// (repo.From for uowkit, the CtxGetter for trm) once per statement, and passes
// the loop counter as its argument, as a repository method would.
package bench

package nopdriver_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/uowkit/uowkit/internal/nopdriver"
)

func TestNopDriver(t *testing.T) {
	t.Parallel()
	db := sql.OpenDB(nopdriver.Connector{})
	t.Cleanup(func() { _ = db.Close() })
	ctx := context.Background()

	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable, ReadOnly: true})
	if err != nil {
		t.Fatalf("BeginTx: %v", err)
	}
	res, err := tx.ExecContext(ctx, "INSERT INTO t VALUES ($1)", 1)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if n, err := res.RowsAffected(); n != 1 || err != nil {
		t.Fatalf("RowsAffected = %d, %v; want 1, nil", n, err)
	}
	rows, err := tx.QueryContext(ctx, "SELECT 1")
	if err != nil {
		t.Fatalf("Query: %v", err)
	}
	if rows.Next() {
		t.Fatal("Query returned a row; want none")
	}
	if err := rows.Close(); err != nil {
		t.Fatalf("rows.Close: %v", err)
	}
	if err := tx.QueryRowContext(ctx, "SELECT 1").Scan(new(int)); err != sql.ErrNoRows {
		t.Fatalf("QueryRow.Scan: %v; want sql.ErrNoRows", err)
	}
	stmt, err := tx.PrepareContext(ctx, "INSERT INTO t VALUES ($1)")
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if _, err := stmt.ExecContext(ctx, 2); err != nil {
		t.Fatalf("stmt.Exec: %v", err)
	}
	if err := stmt.Close(); err != nil {
		t.Fatalf("stmt.Close: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if got := sql.Drivers(); len(got) != 0 {
		t.Fatalf("sql.Drivers() = %v; want none registered", got)
	}
}

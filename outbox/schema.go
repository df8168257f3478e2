package outbox

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"strings"
)

// SchemaFiles holds the schema's SQL files with the default table names,
// for applications to copy into their migrations:
// schema/postgres/outbox.sql, schema/postgres/inbox.sql,
// schema/sqlite/outbox.sql and schema/sqlite/inbox.sql. [Schema] and
// [InboxSchema] return the same SQL with other table names.
//
//go:embed schema
var SchemaFiles embed.FS

// Schema returns the DDL of an outbox in dialect d under table (empty for
// DefaultTable): the outbox table and its indexes, the keys table
// (table_keys), the relays' lease table (table_lease) and, for PostgreSQL,
// the trigger that notifies channel table when messages are recorded. Every
// statement is idempotent (IF NOT EXISTS).
func Schema(d Dialect, table string) (string, error) {
	return schema(d, "outbox.sql", DefaultTable, table)
}

// InboxSchema returns the DDL of an inbox in dialect d under table (empty
// for DefaultInboxTable).
func InboxSchema(d Dialect, table string) (string, error) {
	return schema(d, "inbox.sql", DefaultInboxTable, table)
}

func schema(d Dialect, file, def, table string) (string, error) {
	if err := d.check(); err != nil {
		return "", err
	}
	name, err := tableName(table, def)
	if err != nil {
		return "", err
	}
	b, err := SchemaFiles.ReadFile("schema/" + d.String() + "/" + file)
	if err != nil {
		return "", fmt.Errorf("outbox: %w", err) // cannot happen: embedded
	}
	return strings.ReplaceAll(string(b), def, name), nil
}

// Execer runs a statement: a *sql.DB, a *sqlx.DB, a transaction.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// CreateSchema creates an outbox's tables (see [Schema]) if they do not
// exist: for tests and examples. Applications put the SQL in their
// migrations instead.
func CreateSchema(ctx context.Context, db Execer, d Dialect, table string) error {
	return create(ctx, db, Schema, d, table)
}

// CreateInboxSchema creates an inbox's table (see [InboxSchema]) if it does
// not exist: for tests and examples.
func CreateInboxSchema(ctx context.Context, db Execer, d Dialect, table string) error {
	return create(ctx, db, InboxSchema, d, table)
}

func create(ctx context.Context, db Execer, ddl func(Dialect, string) (string, error), d Dialect, table string) error {
	s, err := ddl(d, table)
	if err != nil {
		return err
	}
	if db == nil {
		return fmt.Errorf("%w: nil database", ErrInvalidConfig)
	}
	if _, err := db.ExecContext(ctx, s); err != nil {
		return fmt.Errorf("outbox: create schema: %w", err)
	}
	return nil
}

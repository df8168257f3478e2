package outbox

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Dialect says which database an outbox lives in: the SQL differs.
type Dialect uint8

const (
	// Postgres is PostgreSQL 11 or later.
	Postgres Dialect = iota + 1
	// SQLite is SQLite 3.35 or later (RETURNING).
	SQLite
)

// String returns the dialect's name.
func (d Dialect) String() string {
	switch d {
	case Postgres:
		return "postgres"
	case SQLite:
		return "sqlite"
	}
	return "Dialect(" + strconv.Itoa(int(d)) + ")"
}

func (d Dialect) check() error {
	if d != Postgres && d != SQLite {
		return fmt.Errorf("%w: unknown dialect %v", ErrInvalidConfig, d)
	}
	return nil
}

// Default table names.
const (
	DefaultTable      = "uowkit_outbox"
	DefaultInboxTable = "uowkit_inbox"
)

// maxNameLen leaves room for the longest suffix ("_undelivered") within
// PostgreSQL's 63-byte identifiers.
const maxNameLen = 48

var namePattern = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// reserved are SQL words that cannot name a table unquoted.
var reserved = map[string]bool{
	"all": true, "analyse": true, "analyze": true, "and": true, "any": true, "array": true, "as": true,
	"asc": true, "asymmetric": true, "both": true, "case": true, "cast": true, "check": true, "collate": true,
	"column": true, "constraint": true, "create": true, "current_date": true, "current_role": true,
	"current_time": true, "current_timestamp": true, "current_user": true, "default": true,
	"deferrable": true, "desc": true, "distinct": true, "do": true, "else": true, "end": true,
	"except": true, "false": true, "fetch": true, "for": true, "foreign": true, "from": true, "grant": true,
	"group": true, "having": true, "in": true, "index": true, "initially": true, "intersect": true, "into": true,
	"lateral": true, "leading": true, "limit": true, "localtime": true, "localtimestamp": true, "not": true,
	"null": true, "offset": true, "on": true, "only": true, "or": true, "order": true, "placing": true,
	"primary": true, "references": true, "returning": true, "select": true, "session_user": true,
	"some": true, "symmetric": true, "table": true, "then": true, "to": true, "trailing": true, "true": true,
	"union": true, "unique": true, "user": true, "using": true, "values": true, "variadic": true, "when": true,
	"where": true, "window": true, "with": true,
}

// tableName returns name, or def when it is empty, after checking that it
// is a lowercase identifier that can appear unquoted in SQL.
func tableName(name, def string) (string, error) {
	if name == "" {
		return def, nil
	}
	switch {
	case len(name) > maxNameLen:
		return "", fmt.Errorf("%w: %.60q is %d bytes long, at most %d", ErrInvalidName, name, len(name), maxNameLen)
	case !namePattern.MatchString(name):
		return "", fmt.Errorf("%w: %q: use lowercase letters, digits and underscores, not starting with a digit (no schema qualification: set search_path)", ErrInvalidName, name)
	case reserved[name]:
		return "", fmt.Errorf("%w: %q is a reserved SQL word", ErrInvalidName, name)
	}
	return name, nil
}

// queries are one outbox table's statements in one dialect.
type queries struct {
	d     Dialect
	table string

	insertKeyed string // args: key, message_id, subject, payload, headers; Postgres only
	upsertKey   string // args: key; returns seq; SQLite only
	insertSeq   string // args: message_id, subject, key, key_seq, payload, headers; SQLite only
	insertPlain string // args: message_id, subject, payload, headers

	lease   string // args: name, holder, duration (µs); returns holder when held
	release string // args: name, holder
	fetch   string // args: limit
	fail    string // args: last_error, id; returns attempts
	lag     string // returns the oldest undelivered message's age (µs)
	purge   string // args: retain (µs), limit
}

func newQueries(d Dialect, table string) *queries {
	q := &queries{d: d, table: table}
	t := table
	switch d {
	case Postgres:
		// The data-modifying CTE upserts the key's row first: the row lock it
		// takes is held until commit, so a second writer of the key waits
		// here, and only then does the outer INSERT draw its id from the
		// identity sequence. For one key, id order is thus commit order.
		q.insertKeyed = `WITH k AS (INSERT INTO ` + t + `_keys (key, seq) VALUES ($1::text, 1)
	ON CONFLICT (key) DO UPDATE SET seq = ` + t + `_keys.seq + 1 RETURNING seq)
INSERT INTO ` + t + ` (message_id, subject, key, key_seq, payload, headers)
SELECT $2::text, $3::text, $1::text, k.seq, $4::bytea, $5::text FROM k`
		q.insertPlain = `INSERT INTO ` + t + ` (message_id, subject, payload, headers) VALUES ($1, $2, $3, $4)`
		q.lease = `INSERT INTO ` + t + `_lease AS l (name, holder, expires_at)
VALUES ($1, $2, clock_timestamp() + $3::float8 * interval '1 microsecond')
ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
	WHERE l.holder = EXCLUDED.holder OR l.expires_at < clock_timestamp()
RETURNING l.holder`
		q.release = `DELETE FROM ` + t + `_lease WHERE name = $1 AND holder = $2`
		q.fetch = `SELECT id, message_id, subject, key, payload, headers,
	(extract(epoch FROM recorded_at) * 1000000)::bigint, attempts
FROM ` + t + ` WHERE delivered_at IS NULL ORDER BY id LIMIT $1`
		q.fail = `UPDATE ` + t + ` SET attempts = attempts + 1, last_error = $1 WHERE id = $2 RETURNING attempts`
		q.lag = `SELECT greatest((extract(epoch FROM clock_timestamp() - recorded_at) * 1000000)::bigint, 0)
FROM ` + t + ` WHERE delivered_at IS NULL ORDER BY id LIMIT 1`
		q.purge = `DELETE FROM ` + t + ` WHERE id IN (SELECT id FROM ` + t + `
	WHERE delivered_at < clock_timestamp() - $1::float8 * interval '1 microsecond' LIMIT $2)`
	case SQLite:
		// SQLite has one writer at a time, holding the database until
		// commit: id order is commit order for every key. The key's seq is
		// still counted, in its own statement (no data-modifying CTEs).
		now := sqliteNow
		q.upsertKey = `INSERT INTO ` + t + `_keys (key, seq) VALUES (?, 1)
	ON CONFLICT (key) DO UPDATE SET seq = seq + 1 RETURNING seq`
		q.insertSeq = `INSERT INTO ` + t + ` (message_id, subject, key, key_seq, payload, headers) VALUES (?, ?, ?, ?, ?, ?)`
		q.insertPlain = `INSERT INTO ` + t + ` (message_id, subject, payload, headers) VALUES (?, ?, ?, ?)`
		q.lease = `INSERT INTO ` + t + `_lease AS l (name, holder, expires_at) VALUES (?1, ?2, ` + now + ` + ?3)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
	WHERE l.holder = excluded.holder OR l.expires_at < ` + now + `
RETURNING holder`
		q.release = `DELETE FROM ` + t + `_lease WHERE name = ? AND holder = ?`
		q.fetch = `SELECT id, message_id, subject, key, payload, headers, recorded_at, attempts
FROM ` + t + ` WHERE delivered_at IS NULL ORDER BY id LIMIT ?`
		q.fail = `UPDATE ` + t + ` SET attempts = attempts + 1, last_error = ? WHERE id = ? RETURNING attempts`
		q.lag = `SELECT max(` + now + ` - recorded_at, 0) FROM ` + t + ` WHERE delivered_at IS NULL ORDER BY id LIMIT 1`
		q.purge = `DELETE FROM ` + t + ` WHERE id IN (SELECT id FROM ` + t + `
	WHERE delivered_at < ` + now + ` - ? LIMIT ?)`
	}
	return q
}

// sqliteNow is the current time in microseconds since the Unix epoch.
const sqliteNow = `CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)`

// markDelivered returns the UPDATE marking n rows delivered, by id.
func (q *queries) markDelivered(n int) string {
	var b strings.Builder
	b.WriteString(`UPDATE ` + q.table + ` SET delivered_at = `)
	if q.d == Postgres {
		b.WriteString(`clock_timestamp()`)
	} else {
		b.WriteString(sqliteNow)
	}
	b.WriteString(` WHERE id IN (`)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		if q.d == Postgres {
			b.WriteString("$" + strconv.Itoa(i+1))
		} else {
			b.WriteByte('?')
		}
	}
	b.WriteString(`)`)
	return b.String()
}

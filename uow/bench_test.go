package uow_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// BenchmarkUnusedUnit measures what a request that never touches the
// database pays for its unit.
func BenchmarkUnusedUnit(b *testing.B) {
	m := uow.New(pgtest.Open(b, "uow"))
	ctx := context.Background()
	b.Run("BeginCommit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, u := m.Begin(ctx)
			if err := u.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Do", func(b *testing.B) {
		b.ReportAllocs()
		fn := func(context.Context) error { return nil }
		for b.Loop() {
			if err := m.Do(ctx, fn); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkInsert compares one INSERT in a transaction through Do with the
// same work written by hand with BeginTxx/Commit.
func BenchmarkInsert(b *testing.B) {
	db := pgtest.Open(b, "uow")
	db.MustExec(`CREATE TABLE IF NOT EXISTS bench_insert (id serial PRIMARY KEY, v int)`)
	db.SetMaxIdleConns(4)
	m := uow.New(db)
	ctx := context.Background()
	const q = `INSERT INTO bench_insert (v) VALUES ($1)`
	b.Run("Do", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			err := m.Do(ctx, func(ctx context.Context) error {
				_, err := repo.From(ctx, db).ExecContext(ctx, q, i)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Hand", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			tx, err := db.BeginTxx(ctx, &sql.TxOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, q, i); err != nil {
				_ = tx.Rollback()
				b.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkResolveOutcomes measures what ResolveOutcomes costs a one-INSERT
// Do: the SELECT of the transaction id before COMMIT.
func BenchmarkResolveOutcomes(b *testing.B) {
	db := pgtest.Open(b, "uow")
	db.MustExec(`CREATE TABLE IF NOT EXISTS bench_insert (id serial PRIMARY KEY, v int)`)
	db.SetMaxIdleConns(4)
	ctx := context.Background()
	const q = `INSERT INTO bench_insert (v) VALUES ($1)`
	for _, c := range []struct {
		name string
		m    *uow.Manager
	}{
		{"Off", uow.New(db)},
		{"On", uow.New(db, uow.ResolveOutcomes(5*time.Second))},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				err := c.m.Do(ctx, func(ctx context.Context) error {
					_, err := repo.From(ctx, db).ExecContext(ctx, q, i)
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTwoPhase compares a unit with one INSERT on each of two sources
// committed plainly (one COMMIT each, in turn) with the same unit committed
// atomically (PREPARE on each, the decision, COMMIT PREPARED on each).
func BenchmarkTwoPhase(b *testing.B) {
	pgtest.RequirePrepared(b)
	da, db := pgtest.Open(b, "2pc_a"), pgtest.Open(b, "2pc_b")
	da.MustExec(uow.TwoPhaseSchema(""))
	for _, d := range []*sqlx.DB{da, db} {
		d.MustExec(`CREATE TABLE IF NOT EXISTS bench_insert (id serial PRIMARY KEY, v int)`)
		d.SetMaxIdleConns(4)
	}
	m := uow.New(nil, uow.WithSource("a", da), uow.WithSource("b", db),
		uow.TwoPhase(uow.TwoPhaseConfig{Prefix: "bench", Decisions: da}))
	if _, err := m.Recover(context.Background()); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	const q = `INSERT INTO bench_insert (v) VALUES ($1)`
	for _, c := range []struct {
		name string
		opts []uow.Option
	}{
		{"Plain", nil},
		{"Atomic", []uow.Option{uow.Atomic()}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				err := m.Do(ctx, func(ctx context.Context) error {
					if _, err := repo.From(ctx, da).ExecContext(ctx, q, i); err != nil {
						return err
					}
					_, err := repo.From(ctx, db).ExecContext(ctx, q, i)
					return err
				}, c.opts...)
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadYourWrites measures what recording a read-your-writes
// position costs a one-INSERT Do on a source with replicas: the SELECT
// pg_current_wal_lsn() after COMMIT, made only under a Consistency.
func BenchmarkReadYourWrites(b *testing.B) {
	primary := pgtest.Open(b, "uow")
	replica := sqlx.MustOpen("postgres", pgtest.ReplicaURL(b, "uow"))
	b.Cleanup(func() { replica.Close() })
	primary.MustExec(`CREATE TABLE IF NOT EXISTS bench_insert (id serial PRIMARY KEY, v int)`)
	primary.SetMaxIdleConns(4)
	m := uow.New(primary, uow.WithReplicas(primary, uow.Replicas{DBs: []*sqlx.DB{replica}}))
	const q = `INSERT INTO bench_insert (v) VALUES ($1)`
	for _, c := range []struct {
		name string
		ctx  context.Context
	}{
		{"Off", context.Background()},
		{"On", uow.WithConsistency(context.Background(), uow.NewConsistency())},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				err := m.Do(c.ctx, func(ctx context.Context) error {
					_, err := repo.From(ctx, primary).ExecContext(ctx, q, i)
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReplicaRouting measures what routing a read-only unit to a
// replica costs the library itself, on a driver that does nothing: a
// read-only Do with one statement on a source with a replica (round-robin,
// no read-your-writes position) against the same on a source without one.
func BenchmarkReplicaRouting(b *testing.B) {
	primary, replica := nopDB(b), nopDB(b)
	for _, c := range []struct {
		name string
		m    *uow.Manager
	}{
		{"Primary", uow.New(primary)},
		{"Replica", uow.New(primary, uow.WithReplicas(primary, uow.Replicas{DBs: []*sqlx.DB{replica}}))},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			for b.Loop() {
				err := c.m.Do(ctx, func(ctx context.Context) error {
					_, err := repo.From(ctx, primary).ExecContext(ctx, `SELECT 1`)
					return err
				}, uow.ReadOnly())
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

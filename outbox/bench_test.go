package outbox_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/uowkit/uowkit/outbox"
	"github.com/uowkit/uowkit/uow"
)

// BenchmarkCommand is a one-event command against real PostgreSQL: a unit
// that inserts one domain row, without and with recording one outbox
// message (one more statement, in the same transaction, plus the
// notification at commit). Compare the two with one compiled binary run
// alternately (see docs/outbox.md).
func BenchmarkCommand(b *testing.B) {
	for _, record := range []bool{false, true} {
		name := "plain"
		if record {
			name = "outbox"
		}
		b.Run(name, func(b *testing.B) {
			e := newEnv(b)
			ctx := context.Background()
			insert := `INSERT INTO ` + e.table + `_orders (item) VALUES ('widget')`
			msg := outbox.Message{Subject: "orders.placed", Key: "customer-1", Payload: []byte(`{"item":"widget"}`)}
			b.ReportAllocs()
			for b.Loop() {
				err := e.m.Do(ctx, func(ctx context.Context) error {
					if _, err := uow.FromContext(ctx).On(e.db).ExecContext(ctx, insert); err != nil {
						return err
					}
					if record {
						return e.ob.Record(ctx, msg)
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRelay measures a relay's throughput to an in-memory publisher:
// b.N messages (on 16 keys) relayed in rounds of the default batch (100),
// marked delivered in groups of the default 32 or of the whole batch.
func BenchmarkRelay(b *testing.B) {
	for _, mark := range []int{outbox.DefaultMarkEvery, outbox.DefaultBatch} {
		b.Run(fmt.Sprint("mark=", mark), func(b *testing.B) {
			e := newEnv(b)
			ctx := context.Background()
			e.db.MustExec(`INSERT INTO `+e.table+` (message_id, subject, key, key_seq, payload)
				SELECT 'm' || i, 'bench', 'k' || (i % 16), i / 16 + 1, '\x7b7d'::bytea FROM generate_series(1, $1) AS i`, b.N)
			e.db.MustExec(`ANALYZE ` + e.table) // as autovacuum would have: the relay's query then uses the partial index
			var published int
			r := e.relay(b, outbox.PublisherFunc(func(context.Context, outbox.Message) error {
				published++
				return nil
			}), outbox.RelayConfig{MarkEvery: mark})
			b.ResetTimer()
			for published < b.N {
				if _, err := r.Deliver(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

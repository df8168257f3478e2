package natsjs_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/outbox"
	"github.com/uowkit/uowkit/outbox/natsjs"
)

// BenchmarkRelayToJetStream measures a relay with the default
// configuration (batch of 100) publishing 10,000 committed messages of
// 256 bytes to JetStream, from the first round to the last mark, and
// reports msgs/s. Recording the messages is not timed. Run it with
//
//	go test -run '^$' -bench RelayToJetStream -benchtime 1x -count 5 .
//
// and take the median: each iteration relays 10,000 messages.
func BenchmarkRelayToJetStream(b *testing.B) {
	const n, per = 10000, 100
	e := newEnv(b)
	js := connect(b)
	name, subject := stream(b, js, 0)
	r, err := outbox.NewRelay(e.db.DB, outbox.Postgres, natsjs.NewPublisher(js, name), outbox.RelayConfig{Table: e.table})
	require.NoError(b, err)
	ctx := context.Background()
	payload := make([]byte, 256)
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		msgs := make([]outbox.Message, per)
		for j := 0; j < n; j += per {
			for k := range msgs {
				msgs[k] = outbox.Message{ID: fmt.Sprintf("b%d-%d", i, j+k), Subject: subject + ".bench", Payload: payload}
			}
			require.NoError(b, e.m.Do(ctx, func(ctx context.Context) error { return e.ob.Record(ctx, msgs...) }))
		}
		b.StartTimer()
		start := time.Now()
		for delivered := 0; delivered < n; {
			d, err := r.Deliver(ctx)
			if err != nil {
				b.Fatal(err)
			}
			delivered += d
		}
		elapsed += time.Since(start)
	}
	b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "msgs/s")
}

// BenchmarkPublish measures one synchronous publish and its PubAck: the
// round trip that bounds a relay, which publishes one message at a time.
func BenchmarkPublish(b *testing.B) {
	js := connect(b)
	name, subject := stream(b, js, 0)
	p := natsjs.NewPublisher(js, name)
	ctx := context.Background()
	payload := make([]byte, 256)
	i := 0
	for b.Loop() {
		i++
		if err := p.Publish(ctx, outbox.Message{ID: fmt.Sprint("p", i), Subject: subject + ".bench", Payload: payload}); err != nil {
			b.Fatal(err)
		}
	}
}

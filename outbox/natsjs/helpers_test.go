package natsjs_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/outbox/natsjs"
)

// envNATS names the environment variable that points the tests at a NATS
// server with JetStream.
const envNATS = "NATS_URL"

// TestMain needs JetStream as pgtest.Main needs PostgreSQL: without a
// server the package is skipped (examples cannot skip themselves), and
// under CI that is a failure. The relay child process (TestRelayChild)
// goes through here too.
func TestMain(m *testing.M) {
	if err := pingNATS(); err != nil {
		if os.Getenv("CI") != "" {
			fmt.Fprintf(os.Stderr, "natsjs: CI is set, so a missing NATS server is a failure: %v\n", err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "natsjs: SKIPPING this package's tests: %v; start nats-server -js or set %s\n", err, envNATS)
		os.Exit(0)
	}
	os.Exit(pgtest.Main(m))
}

func natsURL() string {
	if u := os.Getenv(envNATS); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

// pingNATS checks that a server with JetStream answers.
func pingNATS() error {
	nc, err := nats.Connect(natsURL(), nats.Timeout(3*time.Second), nats.MaxReconnects(0))
	if err != nil {
		return fmt.Errorf("no NATS server at %s: %w", natsURL(), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("no JetStream at %s: %w", natsURL(), err)
	}
	return nil
}

// connect returns a JetStream context on a connection of its own, closed
// at the end of the test.
func connect(tb testing.TB) jetstream.JetStream {
	tb.Helper()
	nc, err := nats.Connect(natsURL(), nats.Timeout(5*time.Second))
	if err != nil {
		tb.Fatalf("nats: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}

// unique returns prefix with a random suffix: streams, subjects and
// consumers of one test never meet another test's, nor an earlier run's.
func unique(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "_" + hex.EncodeToString(b[:])
}

// stream creates a stream of its own for the test, capturing subjects
// "<name>.>", deleted at the end of the test, and returns its name and the
// subject prefix.
func stream(tb testing.TB, js jetstream.JetStream, dup time.Duration) (name, subject string) {
	tb.Helper()
	name = strings.ToUpper(unique("NATSJS"))
	subject = strings.ToLower(name)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := natsjs.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:       name,
		Subjects:   []string{subject + ".>"},
		Duplicates: dup,
		Storage:    jetstream.MemoryStorage,
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, name); err != nil {
			tb.Errorf("delete stream %s: %v", name, err)
		}
	})
	return name, subject
}

// streamIDs returns the number of messages stored in the stream and how
// many times each Nats-Msg-Id occurs among them.
func streamIDs(tb testing.TB, js jetstream.JetStream, name string) (int, map[string]int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	total := int(info.State.Msgs)
	ids := make(map[string]int, total)
	if total == 0 {
		return 0, ids
	}
	// An ordered consumer reads the whole stream once, without acks.
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	for seen := 0; seen < total; {
		batch, err := c.Fetch(min(total-seen, 1000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			tb.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			ids[m.Headers().Get(jetstream.MsgIDHeader)]++
			n++
		}
		if err := batch.Error(); err != nil {
			tb.Fatal(err)
		}
		if n == 0 {
			tb.Fatalf("stream %s: read %d of %d messages, then nothing", name, seen, total)
		}
		seen += n
	}
	return total, ids
}

package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Broker is the NATS JetStream the service publishes its events to and its
// projector consumes them from: an external server (NATS.URL), or, by
// default, a server embedded in the process.
type Broker struct {
	// Conn is the connection to the server.
	Conn *nats.Conn
	// JS is JetStream on Conn.
	JS jetstream.JetStream
	// URL is the server's client URL (the embedded one's is on the
	// loopback interface, on a port of its own).
	URL string

	srv *server.Server
	dir string
}

// NATS says which NATS server the service uses. Logged (slog.Any), it
// describes itself without the URL's credentials.
type NATS struct {
	// URL is the external server's; empty: an embedded server.
	URL string
	// Dir is where an embedded server stores JetStream's data (a
	// temporary directory, removed at Close).
	Dir string
}

// LogValue describes n for the log: the URL without its user information,
// or "embedded" and the directory.
func (n NATS) LogValue() slog.Value {
	if n.URL == "" {
		return slog.GroupValue(slog.Bool("embedded", true), slog.String("dir", n.Dir))
	}
	u, err := url.Parse(n.URL)
	if err != nil || u.Host == "" {
		return slog.GroupValue(slog.String("error", "NATS_URL cannot be parsed"))
	}
	u.User = nil
	return slog.GroupValue(slog.String("url", u.String()))
}

// OpenBroker connects to the server n names, or starts one in the process,
// with JetStream storing in n.Dir and listening on a random loopback port,
// and connects to it.
func OpenBroker(n NATS) (*Broker, error) {
	b := &Broker{URL: n.URL}
	if n.URL == "" {
		srv, err := server.NewServer(&server.Options{
			Host:      "127.0.0.1",
			Port:      server.RANDOM_PORT,
			JetStream: true,
			StoreDir:  n.Dir,
			NoSigs:    true,
			NoLog:     true,
		})
		if err != nil {
			return nil, fmt.Errorf("embedded NATS: %w", err)
		}
		srv.Start()
		if !srv.ReadyForConnections(10 * time.Second) {
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil, errors.New("embedded NATS: not ready after 10s")
		}
		b.srv, b.dir, b.URL = srv, n.Dir, srv.ClientURL()
	}
	nc, err := nats.Connect(b.URL, nats.Name("webapp"), nats.MaxReconnects(-1))
	if err != nil {
		b.stopServer()
		return nil, fmt.Errorf("NATS_URL: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		b.stopServer()
		return nil, fmt.Errorf("NATS: %w", err)
	}
	b.Conn, b.JS = nc, js
	return b, nil
}

// Close drains the connection (what it has published is flushed, its
// subscriptions end), then stops the embedded server, if any, and removes
// its directory.
func (b *Broker) Close() error {
	closed := make(chan struct{})
	b.Conn.SetClosedHandler(func(*nats.Conn) { close(closed) })
	var err error
	if derr := b.Conn.Drain(); derr != nil {
		b.Conn.Close()
		err = derr
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		b.Conn.Close()
		err = errors.Join(err, errors.New("NATS: drain not finished after 10s"))
	}
	return errors.Join(err, b.stopServer())
}

func (b *Broker) stopServer() error {
	if b.srv == nil {
		return nil
	}
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
	b.srv = nil
	return os.RemoveAll(b.dir)
}

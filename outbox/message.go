package outbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits Record enforces on a message, so that a bad message is refused
// before anything is written rather than by the database halfway through.
const (
	MaxIDLen         = 255  // bytes of Message.ID
	MaxSubjectLen    = 1024 // bytes of Message.Subject
	MaxKeyLen        = 1024 // bytes of Message.Key
	MaxHeaderNameLen = 256  // bytes of a header's name
	MaxHeaders       = 64   // headers of one message
)

// Message is one message to publish once the unit that recorded it commits.
type Message struct {
	// ID identifies the message for consumers, which drop duplicates by it
	// (see Inbox). Record generates one (NewID) when it is empty; an ID
	// already in the outbox makes Record fail.
	ID string
	// Subject is where the message is published (a NATS subject, a topic).
	// Required.
	Subject string
	// Key is the ordering key: messages of one key are delivered in the
	// order their units committed. Messages without a key have no order.
	Key string
	// Payload is the message body, delivered as is.
	Payload []byte
	// Headers are delivered with the message. Names must be non-empty.
	Headers map[string]string
	// RecordedAt is when Record wrote the message, by the database's clock.
	// Record ignores it; the relay sets it on the messages it publishes.
	RecordedAt time.Time
}

// Publisher delivers messages to a broker. Publish returns nil only once
// the broker has acknowledged m (for NATS JetStream: the PubAck), so that a
// relay marks delivered only what the broker has. It is called by one
// goroutine at a time, in the relay's order, and must honour ctx: a relay
// cancels it when its lease runs out.
type Publisher interface {
	Publish(ctx context.Context, m Message) error
}

// PublisherFunc adapts a function to a Publisher.
type PublisherFunc func(ctx context.Context, m Message) error

// Publish calls f.
func (f PublisherFunc) Publish(ctx context.Context, m Message) error { return f(ctx, m) }

// NewID returns a random 128-bit identifier as 32 lowercase hex digits: what
// Record gives a message without an ID. Use it to know a message's ID before
// recording it.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// row is a message ready to be written.
type row struct {
	id, subject, key string
	payload          []byte
	headers          *string
}

// prepare validates msgs and returns the rows to write, with the IDs
// generated; nothing is written when it fails.
func prepare(msgs []Message) ([]row, error) {
	rows := make([]row, len(msgs))
	seen := make(map[string]int, len(msgs))
	for i, m := range msgs {
		fail := func(format string, args ...any) error {
			return &MessageError{Index: i, ID: m.ID, Reason: fmt.Sprintf(format, args...)}
		}
		id := m.ID
		if id == "" {
			id = NewID()
		} else if err := checkText(id, MaxIDLen); err != "" {
			return nil, fail("id %s", err)
		}
		if j, dup := seen[id]; dup {
			return nil, fail("duplicate id: message #%d has it too", j)
		}
		seen[id] = i
		if m.Subject == "" {
			return nil, fail("empty subject")
		}
		if err := checkText(m.Subject, MaxSubjectLen); err != "" {
			return nil, fail("subject %s", err)
		}
		if m.Key != "" {
			if err := checkText(m.Key, MaxKeyLen); err != "" {
				return nil, fail("key %s", err)
			}
		}
		r := row{id: id, subject: m.Subject, key: m.Key, payload: m.Payload}
		if r.payload == nil {
			r.payload = []byte{} // NOT NULL
		}
		if len(m.Headers) > 0 {
			if len(m.Headers) > MaxHeaders {
				return nil, fail("%d headers, at most %d", len(m.Headers), MaxHeaders)
			}
			for name, value := range m.Headers {
				if name == "" {
					return nil, fail("empty header name")
				}
				if err := checkText(name, MaxHeaderNameLen); err != "" {
					return nil, fail("header name %.40q %s", name, err)
				}
				if err := checkText(value, -1); err != "" {
					return nil, fail("header %q's value %s", name, err)
				}
			}
			b, err := json.Marshal(m.Headers)
			if err != nil {
				return nil, fail("headers: %v", err)
			}
			s := string(b)
			r.headers = &s
		}
		rows[i] = r
	}
	return rows, nil
}

// checkText returns why s cannot be stored as text (too long, not UTF-8, a
// NUL byte, which PostgreSQL's text refuses), or "".
func checkText(s string, max int) string {
	switch {
	case max >= 0 && len(s) > max:
		return fmt.Sprintf("is %d bytes long, at most %d", len(s), max)
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	case strings.IndexByte(s, 0) >= 0:
		return "contains a NUL byte"
	}
	return ""
}

// decodeHeaders reads the headers column.
func decodeHeaders(s *string) (map[string]string, error) {
	if s == nil || *s == "" {
		return nil, nil
	}
	var h map[string]string
	if err := json.Unmarshal([]byte(*s), &h); err != nil {
		return nil, fmt.Errorf("outbox: headers: %w", err)
	}
	return h, nil
}

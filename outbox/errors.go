package outbox

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidName reports a table name that is not a plain lowercase SQL
	// identifier (see [New]). Names are checked, never quoted or escaped, so
	// nothing a caller passes can change the statements' meaning.
	ErrInvalidName = errors.New("outbox: invalid table name")

	// ErrInvalidConfig reports a misconfigured Outbox, Relay or Inbox: an
	// unknown dialect, a nil database or publisher, a negative duration.
	ErrInvalidConfig = errors.New("outbox: invalid configuration")

	// ErrInvalidMessage reports a message Record refused; the error is a
	// [*MessageError] saying which message and why. Nothing was written.
	ErrInvalidMessage = errors.New("outbox: invalid message")

	// ErrNotHolder reports that another relay instance holds the lease:
	// this one must not publish now.
	ErrNotHolder = errors.New("outbox: another relay holds the lease")

	// ErrRunning reports a second concurrent call of [Relay.Run] on one
	// Relay.
	ErrRunning = errors.New("outbox: relay already running")
)

// MessageError says which message Record refused and why. It matches
// [ErrInvalidMessage].
type MessageError struct {
	// Index is the message's position among Record's arguments.
	Index int
	// ID is the message's ID as given (empty when Record was to generate
	// it).
	ID string
	// Reason says what is wrong.
	Reason string
}

// Error returns a description of the refused message.
func (e *MessageError) Error() string {
	if e.ID == "" {
		return fmt.Sprintf("outbox: invalid message #%d: %s", e.Index, e.Reason)
	}
	return fmt.Sprintf("outbox: invalid message #%d (id %q): %s", e.Index, e.ID, e.Reason)
}

// Is reports whether target is ErrInvalidMessage.
func (e *MessageError) Is(target error) bool { return target == ErrInvalidMessage }

// PublishError is a publisher's failure to deliver one message; a relay
// round that ends with one reports it as its Event's Err. It unwraps to the
// publisher's error.
type PublishError struct {
	// ID and Subject identify the message.
	ID, Subject string
	// Attempts is how many deliveries of the message have failed so far,
	// this one included.
	Attempts int
	// Err is the publisher's error.
	Err error
}

// Error describes the failed delivery.
func (e *PublishError) Error() string {
	return fmt.Sprintf("outbox: publish %s (subject %s, attempt %d): %v", e.ID, e.Subject, e.Attempts, e.Err)
}

// Unwrap returns the publisher's error.
func (e *PublishError) Unwrap() error { return e.Err }

package faultproxy

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards connections from Addr to a PostgreSQL server.
type Proxy struct {
	ln     net.Listener
	target string

	commitMode atomic.Int32 // what to do with the answer to a COMMIT
	reject     atomic.Int64 // connections still to be dropped on accept
	resetBegin atomic.Int64 // BEGINs still to be answered with a TCP reset
	commits    atomic.Int64 // COMMITs applied by the server whose answer was withheld
	dropped    atomic.Int64 // COMMITs never forwarded to the server
	applied    chan struct{}

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// Start listens on 127.0.0.1 and forwards to target (host:port). The proxy is
// closed at the end of the test.
func Start(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}, applied: make(chan struct{}, 64)}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.Close)
	return p
}

// Addr returns the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// What happens to the server's answer to a COMMIT.
const (
	commitForward int32 = iota
	commitDrop
	commitStall
	commitLose // the COMMIT itself is dropped
)

// DropCommitReply makes the proxy, from now on, forward a client's COMMIT to
// the server, wait until the server has answered it (so it is applied), then
// drop that answer and close the client's connection: the client sees a
// broken connection for a COMMIT that took effect. false forwards answers
// again.
func (p *Proxy) DropCommitReply(on bool) { p.setCommitMode(on, commitDrop) }

// DropCommit makes the proxy, from now on, drop a client's COMMIT before
// it reaches the server and close the connection: the client has sent its
// COMMIT and sees a broken connection, but the server never received it and
// rolls the transaction back when it notices the session is gone. false
// forwards COMMITs again.
func (p *Proxy) DropCommit(on bool) { p.setCommitMode(on, commitLose) }

// LostCommits returns how many COMMITs the proxy dropped before they
// reached the server (see [Proxy.DropCommit]).
func (p *Proxy) LostCommits() int64 { return p.dropped.Load() }

// StallCommitReply makes the proxy, from now on, forward a client's COMMIT
// to the server and hold back the server's answer for as long as the
// connection lives: the client waits for a COMMIT that took effect, until it
// gives up (a context ends) or [Proxy.CloseAll] breaks the connection. false
// forwards answers again.
func (p *Proxy) StallCommitReply(on bool) { p.setCommitMode(on, commitStall) }

func (p *Proxy) setCommitMode(on bool, mode int32) {
	if !on {
		mode = commitForward
	}
	p.commitMode.Store(mode)
}

// Applied receives a value each time the server has applied a COMMIT whose
// answer the proxy then dropped or held back (up to 64 not yet received), so
// that a test can wait for that moment instead of sleeping.
func (p *Proxy) Applied() <-chan struct{} { return p.applied }

// RejectNext makes the proxy close the next n connections as soon as they
// are accepted, before the server sees them: the client's connection attempt
// fails during start-up.
func (p *Proxy) RejectNext(n int) { p.reject.Store(int64(n)) }

// DroppedCommits returns how many COMMIT answers were dropped or held back
// after the server had applied the COMMIT.
func (p *Proxy) DroppedCommits() int64 { return p.commits.Load() }

// CloseAll closes every connection currently proxied.
func (p *Proxy) CloseAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// ResetAll aborts every connection currently proxied with a TCP reset
// (SO_LINGER 0) instead of an orderly close, as a server under load, or a
// middlebox, does: the client's next read or write on an idle pooled
// connection fails with "connection reset by peer", which drivers pass
// through as a network error rather than driver.ErrBadConn.
func (p *Proxy) ResetAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
	}
}

// ResetNextBegins makes the proxy answer the next n BEGIN statements by
// resetting the client's connection (TCP RST) without forwarding them: the
// client has sent its BEGIN and reads "connection reset by peer", as when a
// server backend dies under load while the statement is on its way. Nothing
// ran; drivers pass the network error through.
func (p *Proxy) ResetNextBegins(n int) { p.resetBegin.Store(int64(n)) }

// Close stops the proxy and closes its connections.
func (p *Proxy) Close() {
	p.ln.Close()
	p.CloseAll()
	p.wg.Wait()
}

func (p *Proxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.reject.Load() > 0 && p.reject.Add(-1) >= 0 {
			client.Close()
			continue
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		p.track(client, true)
		p.track(server, true)
		s := &session{p: p, client: client, server: server}
		p.wg.Add(2)
		go s.clientToServer()
		go s.serverToClient()
	}
}

type session struct {
	p              *Proxy
	client, server net.Conn
	commitSent     atomic.Int32 // a COMMIT went to the server: what to do with its answer
}

func (s *session) close() {
	s.client.Close()
	s.server.Close()
	s.p.track(s.client, false)
	s.p.track(s.server, false)
}

// clientToServer forwards the client's messages, noticing COMMIT.
func (s *session) clientToServer() {
	defer s.p.wg.Done()
	defer s.close()
	// The startup message has no type byte: length, then payload.
	if err := forwardStartup(s.client, s.server); err != nil {
		return
	}
	for {
		typ, body, err := readMessage(s.client)
		if err != nil {
			return
		}
		if mode := s.p.commitMode.Load(); mode != commitForward && isCommit(typ, body) {
			if mode == commitLose {
				s.p.dropped.Add(1)
				return // closes both sides; the server never sees the COMMIT
			}
			s.commitSent.Store(mode)
		}
		if s.p.resetBegin.Load() > 0 && statementIs(typ, body, "begin") && s.p.resetBegin.Add(-1) >= 0 {
			if tc, ok := s.client.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			return // closes both sides; the client gets a reset
		}
		if err := writeMessage(s.server, typ, body); err != nil {
			return
		}
	}
}

// serverToClient forwards the server's messages; after a watched COMMIT it
// waits for ReadyForQuery (the COMMIT is done), and withholds it all: it
// hangs up at once (drop) or when either side closes (stall).
func (s *session) serverToClient() {
	defer s.p.wg.Done()
	defer s.close()
	for {
		typ, body, err := readMessage(s.server)
		if err != nil {
			return
		}
		if mode := s.commitSent.Load(); mode != commitForward {
			if typ != 'Z' {
				continue
			}
			s.p.commits.Add(1)
			select {
			case s.p.applied <- struct{}{}:
			default:
			}
			if mode == commitDrop {
				return // closes both sides without a word to the client
			}
			_, _ = io.Copy(io.Discard, s.server)
			return
		}
		if err := writeMessage(s.client, typ, body); err != nil {
			return
		}
	}
}

// statementIs reports whether a client message runs a statement whose first
// word is word (lower case), by the simple protocol or as a Parse.
func statementIs(typ byte, body []byte, word string) bool {
	q, ok := queryText(typ, body)
	if !ok {
		return false
	}
	f := strings.Fields(strings.ToLower(q))
	return len(f) > 0 && strings.TrimRight(f[0], ";") == word
}

// queryText returns the SQL text of a 'Q' or 'P' message.
func queryText(typ byte, body []byte) (string, bool) {
	var q []byte
	switch typ {
	case 'Q':
		q = body
	case 'P':
		i := indexByte(body, 0)
		if i < 0 {
			return "", false
		}
		q = body[i+1:]
	default:
		return "", false
	}
	if i := indexByte(q, 0); i >= 0 {
		q = q[:i]
	}
	return string(q), true
}

// isCommit reports whether a client message runs COMMIT, by the simple
// protocol ('Q', what lib/pq and pgx send) or as a Parse ('P').
func isCommit(typ byte, body []byte) bool {
	var q []byte
	switch typ {
	case 'Q':
		q = body
	case 'P':
		// name\0 query\0 ...
		i := indexByte(body, 0)
		if i < 0 {
			return false
		}
		q = body[i+1:]
	default:
		return false
	}
	if i := indexByte(q, 0); i >= 0 {
		q = q[:i]
	}
	s := strings.TrimSpace(strings.TrimRight(strings.TrimSpace(string(q)), ";"))
	switch strings.ToLower(strings.Join(strings.Fields(s), " ")) {
	case "commit", "commit transaction", "commit work", "end", "end transaction", "end work":
		return true
	}
	return false
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func forwardStartup(from io.Reader, to io.Writer) error {
	var hdr [4]byte
	if _, err := io.ReadFull(from, hdr[:]); err != nil {
		return err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n < 4 || n > 1<<20 {
		return errors.New("faultproxy: bad startup length")
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(from, body); err != nil {
		return err
	}
	if _, err := to.Write(append(hdr[:], body...)); err != nil {
		return err
	}
	return nil
}

func readMessage(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[1:]))
	if n < 4 || n > 1<<30 {
		return 0, nil, errors.New("faultproxy: bad message length")
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return hdr[0], body, nil
}

func writeMessage(w io.Writer, typ byte, body []byte) error {
	buf := make([]byte, 5+len(body))
	buf[0] = typ
	binary.BigEndian.PutUint32(buf[1:], uint32(len(body)+4))
	copy(buf[5:], body)
	_, err := w.Write(buf)
	return err
}

package drain_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/drain"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// server serves "/" (ok) and "/slow" (answers once release is closed).
type server struct {
	srv     *http.Server
	ln      net.Listener
	conns   *drain.Conns
	started chan struct{} // a /slow request reached the handler
	release chan struct{}
	done    chan error
}

func newServer(t *testing.T) *server {
	t.Helper()
	s := &server{started: make(chan struct{}, 1), release: make(chan struct{}), done: make(chan error, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		s.started <- struct{}{}
		<-s.release
		io.WriteString(w, "slow")
	})
	s.srv = &http.Server{Handler: mux}
	s.conns = drain.Track(s.srv)
	var err error
	if s.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.srv.Serve(s.ln) }()
	t.Cleanup(func() {
		s.srv.Close()
		<-s.done
	})
	return s
}

// shutdown starts a drain with timeout and returns its result channel.
func (s *server) shutdown(timeout time.Duration) <-chan error {
	res := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		res <- s.conns.Shutdown(ctx, s.srv, s.ln)
	}()
	return res
}

// client is one keep-alive HTTP/1.1 connection.
type client struct {
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{conn: c, r: bufio.NewReader(c)}
}

func (c *client) send(t *testing.T, path string) {
	t.Helper()
	if _, err := io.WriteString(c.conn, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
}

func (c *client) response(t *testing.T) (*http.Response, string) {
	t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// closed checks that the server ended the connection cleanly (EOF, not a
// reset).
func (c *client) closed(t *testing.T) {
	t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("connection not closed cleanly: %v", err)
	}
}

func wait(t *testing.T, res <-chan error) error {
	t.Helper()
	select {
	case err := <-res:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return")
		return nil
	}
}

// An idle keep-alive connection is not cut when the drain starts: its
// next request is answered with "Connection: close", then it is closed;
// after that the listener is closed.
func TestIdleConnectionGetsOneMoreRequest(t *testing.T) {
	s := newServer(t)
	c := dial(t, s.ln.Addr().String())
	c.send(t, "/")
	if resp, _ := c.response(t); resp.Close {
		t.Fatal("keep-alive off before the drain")
	}
	res := s.shutdown(10 * time.Second)
	testutil.Eventually(t, 10*time.Second, func() error {
		if !s.conns.Draining() {
			return errors.New("not draining yet")
		}
		return nil
	})
	c.send(t, "/")
	resp, body := c.response(t)
	if resp.StatusCode != 200 || body != "ok" || !resp.Close {
		t.Errorf("during the drain: %s %q Connection: %q, want 200 ok with Connection: close", resp.Status, body, resp.Header.Get("Connection"))
	}
	c.closed(t)
	if err := wait(t, res); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if c, err := net.Dial("tcp", s.ln.Addr().String()); err == nil {
		c.Close()
		t.Error("still accepting after the drain")
	}
}

// A request in flight when the drain starts completes, with "Connection:
// close"; until it has, the server keeps answering new connections (with
// "Connection: close") rather than leaving them in the queue.
func TestInFlightRequestCompletes(t *testing.T) {
	s := newServer(t)
	c := dial(t, s.ln.Addr().String())
	c.send(t, "/slow")
	<-s.started
	res := s.shutdown(10 * time.Second)
	testutil.Eventually(t, 10*time.Second, func() error {
		if !s.conns.Draining() {
			return errors.New("not draining yet")
		}
		return nil
	})
	nc := dial(t, s.ln.Addr().String())
	nc.send(t, "/")
	if resp, body := nc.response(t); resp.StatusCode != 200 || body != "ok" || !resp.Close {
		t.Errorf("new connection during the drain: %s %q close=%v, want 200 ok with Connection: close", resp.Status, body, resp.Close)
	}
	nc.closed(t)
	close(s.release)
	resp, body := c.response(t)
	if resp.StatusCode != 200 || body != "slow" || !resp.Close {
		t.Errorf("in flight: %s %q close=%v, want 200 slow with Connection: close", resp.Status, body, resp.Close)
	}
	c.closed(t)
	if err := wait(t, res); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// An idle connection that brings no request is closed after the grace,
// and Shutdown returns.
func TestIdleConnectionClosedAfterGrace(t *testing.T) {
	s := newServer(t)
	c := dial(t, s.ln.Addr().String())
	c.send(t, "/")
	c.response(t)
	res := s.shutdown(10 * time.Second)
	c.closed(t)
	if err := wait(t, res); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// A request still running at the deadline makes Shutdown return the
// context's error (the caller then cuts it).
func TestDeadline(t *testing.T) {
	s := newServer(t)
	c := dial(t, s.ln.Addr().String())
	c.send(t, "/slow")
	defer close(s.release)
	<-s.started
	if err := wait(t, s.shutdown(300*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a request in flight: %v, want the deadline", err)
	}
}

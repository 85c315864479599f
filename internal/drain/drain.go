// Package drain shuts an http.Server down without failing its clients,
// for the agent's restarts. The listening socket outlives the process
// where systemd's fd store or a re-exec keeps it: connections that arrive
// after the server stops accepting wait in its queue for the next process.
// Under systemd the next process starts only once this one has exited, so
// every moment between closing the listener and exiting is a moment those
// connections wait. A drain therefore goes:
//  1. Every response from now on carries "Connection: close" (HTTP/1.x) or
//     ends its connection with a GOAWAY (HTTP/2), so clients open their
//     next request on a new connection. The server keeps accepting and
//     answering while the connections it had when the drain began settle:
//     requests in flight finish (a slow page does not hold new clients in
//     the queue), and an idle keep-alive connection is not closed at once,
//     which would race a request its client is sending right then (the
//     client sees a reset and, for a POST, an error): it gets IdleGrace to
//     bring one more request, answered with "Connection: close", and is
//     closed after that. This lasts at most half of the caller's time.
//  2. It stops accepting, right when the last of those settled, and waits
//     for the requests accepted meanwhile; requests still running at the
//     caller's deadline are left to the caller to cut (http.Server.Close).
//     Hijacked connections (WebSockets) are not waited for.
//
// It owns no listener and no server: the caller passes them in.
package drain

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// IdleGrace is how long an idle keep-alive connection is kept during a
// drain for one more request.
const IdleGrace = time.Second

// newGrace is how long a new connection may take to bring its first
// request (a TLS handshake on a busy machine) before a drain closes it, as
// http.Server.Shutdown allows.
const newGrace = 5 * time.Second

const poll = 20 * time.Millisecond

// Conns follows a server's connections for a drain.
type Conns struct {
	draining atomic.Bool
	changed  chan struct{} // a connection changed state during a drain
	mu       sync.Mutex
	open     map[net.Conn]connState
}

type connState struct {
	state http.ConnState
	since time.Time
}

// Track makes srv's connections followed, and its responses during a
// drain close their connections. Call it before the server serves; a
// ConnState hook already set keeps being called.
func Track(srv *http.Server) *Conns {
	c := &Conns{open: map[net.Conn]connState{}, changed: make(chan struct{}, 1)}
	hook := srv.ConnState
	srv.ConnState = func(conn net.Conn, state http.ConnState) {
		c.track(conn, state)
		if hook != nil {
			hook(conn, state)
		}
	}
	srv.Handler = c.closeWhenDraining(srv.Handler)
	return c
}

// Draining reports whether a drain has started.
func (c *Conns) Draining() bool { return c.draining.Load() }

// Shutdown drains srv, which serves ln (see the package comment), then
// srv.Shutdown runs h2's graceful hooks. It returns ctx's error when
// connections are left at the deadline: the caller cuts them with
// srv.Close.
func (c *Conns) Shutdown(ctx context.Context, srv *http.Server, ln net.Listener) error {
	start := time.Now()
	c.draining.Store(true)
	accepting, cancel := firstHalf(ctx)
	c.wait(accepting, func() bool { c.closeIdle(start); return !c.pending(start) })
	cancel()
	if ln != nil {
		ln.Close()
	}
	if err := c.wait(ctx, func() bool { return c.closeIdle(start) == 0 }); err != nil {
		return err
	}
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, net.ErrClosed) { // ln, closed above
		return err
	}
	return nil
}

// firstHalf is ctx until half of its time is left: the listener keeps
// accepting for at most that long, so the requests it accepts meanwhile
// have the other half to finish.
func firstHalf(ctx context.Context) (context.Context, context.CancelFunc) {
	if deadline, ok := ctx.Deadline(); ok {
		return context.WithDeadline(ctx, deadline.Add(-time.Until(deadline)/2))
	}
	return context.WithCancel(ctx)
}

func (c *Conns) track(conn net.Conn, state http.ConnState) {
	c.mu.Lock()
	switch state {
	case http.StateHijacked, http.StateClosed:
		delete(c.open, conn)
	default:
		c.open[conn] = connState{state: state, since: time.Now()}
	}
	c.mu.Unlock()
	if c.draining.Load() {
		select {
		case c.changed <- struct{}{}:
		default:
		}
	}
}

// wait waits until done reports true or ctx ends. It looks again at every
// change of a connection's state (and every poll), so that the listener
// closes right when the last request from before the drain ends — before
// its client comes back with the next one.
func (c *Conns) wait(ctx context.Context, done func() bool) error {
	t := time.NewTicker(poll)
	defer t.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.changed:
		case <-t.C:
		}
	}
	return nil
}

// pending reports whether a connection from before start is still open and
// has not moved since: a request running since then, or an idle or new
// connection that has not brought its next request yet.
func (c *Conns) pending(start time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.open {
		if !st.since.After(start) {
			return true
		}
	}
	return false
}

// closeIdle closes the connections that have waited for a request
// IdleGrace (newGrace for a new one) since start, or since they were opened
// or last answered if later, and reports how many connections remain.
func (c *Conns) closeIdle(start time.Time) int {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for conn, st := range c.open {
		grace := map[http.ConnState]time.Duration{http.StateIdle: IdleGrace, http.StateNew: newGrace}[st.state]
		if grace > 0 && now.Sub(later(st.since, start)) >= grace {
			conn.Close() // a TLS connection sends close_notify first
			delete(c.open, conn)
		}
	}
	return len(c.open)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// closeWhenDraining makes every response written during a drain end its
// connection.
func (c *Conns) closeWhenDraining(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&drainWriter{ResponseWriter: w, draining: &c.draining}, r)
	})
}

// drainWriter adds "Connection: close" to a final response (not to 1xx,
// nor to 101 Switching Protocols) whose header is written during a drain:
// a request already in flight when the drain starts gets it too.
type drainWriter struct {
	http.ResponseWriter
	draining *atomic.Bool
	wrote    bool
}

func (w *drainWriter) WriteHeader(code int) {
	if !w.wrote && code >= 200 {
		w.wrote = true
		if w.draining.Load() {
			w.Header().Set("Connection", "close")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *drainWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (w *drainWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

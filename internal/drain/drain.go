// Package drain shuts an http.Server down without failing its clients,
// for the agent's restarts. The listening socket outlives the process
// where systemd's fd store or a re-exec keeps it: connections that arrive
// after the server stops accepting wait in its queue for the next process.
// So that they wait as little as possible, a drain goes:
//  1. every response from now on carries "Connection: close" (HTTP/1.x) or
//     ends its connection with a GOAWAY (HTTP/2), so clients open their
//     next request on a new connection; the server keeps accepting (and
//     answering) until the requests in flight when the drain began have
//     finished — a slow page does not hold new clients in the queue;
//  2. it stops accepting; an idle keep-alive connection is not closed at
//     once, which would race a request the client is sending on it right
//     then (the client sees a reset and, for a POST, an error): it gets
//     IdleGrace to bring one more request, answered with "Connection:
//     close"; requests still running get until the caller's deadline, then
//     the caller cuts what is left (http.Server.Close). Hijacked
//     connections (WebSockets) are not waited for.
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
	err := c.waitActive(ctx, start)
	if ln != nil {
		ln.Close()
	}
	if err != nil {
		return err
	}
	if err := c.drain(ctx, IdleGrace); err != nil {
		return err
	}
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, net.ErrClosed) { // ln, closed above
		return err
	}
	return nil
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

// waitActive waits until no request that was running at start still runs.
// It looks again at every change of a connection's state, so that the
// listener closes before a client whose slow request just ended comes back
// with the next one.
func (c *Conns) waitActive(ctx context.Context, start time.Time) error {
	t := time.NewTicker(poll)
	defer t.Stop()
	for c.activeSince(start) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.changed:
		case <-t.C:
		}
	}
	return nil
}

func (c *Conns) activeSince(start time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.open {
		if st.state == http.StateActive && !st.since.After(start) {
			return true
		}
	}
	return false
}

// closeIdle closes the connections idle for grace since start (or since
// they last answered, if later) and reports how many connections remain.
func (c *Conns) closeIdle(start time.Time, grace time.Duration) int {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for conn, st := range c.open {
		if st.state == http.StateIdle && now.Sub(later(st.since, start)) >= grace {
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

// drain waits until every connection is closed or ctx ends, closing idle
// ones after the grace.
func (c *Conns) drain(ctx context.Context, grace time.Duration) error {
	start := time.Now()
	t := time.NewTicker(poll)
	defer t.Stop()
	for c.closeIdle(start, grace) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
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

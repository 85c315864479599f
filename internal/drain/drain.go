// Package drain shuts an http.Server down without failing its clients,
// for the agent's restarts: the server stops accepting (its socket stays
// open where systemd's fd store or a re-exec keeps it, so new connections
// wait for the next process) and lets the connections it has finish:
//   - every response from then on carries "Connection: close" (HTTP/1.x)
//     or ends the connection with a GOAWAY (HTTP/2), so clients open their
//     next request on a new connection;
//   - an idle keep-alive connection is not closed at once, which would race
//     a request the client is sending on it right then (the client sees a
//     reset and, for a POST, an error): it gets drainIdleGrace to bring
//     one more request (IdleGrace), answered with "Connection: close";
//   - requests in flight get until the caller's deadline; the caller then
//     cuts what is left (http.Server.Close). Hijacked connections
//     (WebSockets) are not waited for.
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
	c := &Conns{open: map[net.Conn]connState{}}
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

// Shutdown drains srv, which serves ln: ln is closed, connections finish
// (idle ones get IdleGrace), then srv.Shutdown runs h2's graceful hooks.
// It returns ctx's error when connections are left at the deadline: the
// caller cuts them with srv.Close.
func (c *Conns) Shutdown(ctx context.Context, srv *http.Server, ln net.Listener) error {
	c.draining.Store(true)
	if ln != nil {
		ln.Close()
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
	defer c.mu.Unlock()
	switch state {
	case http.StateHijacked, http.StateClosed:
		delete(c.open, conn)
	default:
		c.open[conn] = connState{state: state, since: time.Now()}
	}
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

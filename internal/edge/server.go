package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/nodeagent/nodeagent/internal/drain"
	"github.com/nodeagent/nodeagent/internal/guard"
)

// server is one listener of the edge: its http.Server, the bound listener
// and the goroutine serving it.
type server struct {
	key    string // config key, for errors and logs
	bind   string // configured address
	listen func(key, addr string) (net.Listener, error)
	log    *slog.Logger
	srv    *http.Server
	tls    *tls.Config // nil: plain HTTP
	ln     net.Listener
	lim    guard.Limits
	conns  *drain.Conns
	wg     sync.WaitGroup
	base   context.CancelFunc // cancels every request context, WebSockets included
}

func (e *Edge) newServer(key, bind string, h http.Handler, tlsCfg *tls.Config) *server {
	base, cancel := context.WithCancel(context.Background())
	s := &server{key: key, bind: bind, listen: e.cfg.Listen, log: e.log.With("listener", key), tls: tlsCfg,
		base: cancel, lim: guard.Edge(e.cfg.MaxConnsPerClient, e.trusted)}
	if s.listen == nil {
		s.listen = func(_, addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
	}
	// Header and body limits, deadlines that trail the progress of bodies
	// and responses: no overall limit, so large transfers take as long as
	// they take while bytes keep moving.
	s.srv = s.lim.Server(h)
	s.srv.TLSConfig = tlsCfg
	s.srv.ErrorLog = log.New(serverLog{s.log}, "", 0)
	s.srv.BaseContext = func(net.Listener) context.Context { return base }
	s.conns = drain.Track(s.srv)
	return s
}

func (s *server) bindListener() error {
	ln, err := s.listen(s.key, s.bind)
	if err != nil {
		return fmt.Errorf("%s: %w", s.key, err)
	}
	s.ln = ln
	return nil
}

func (s *server) serve() {
	if s.ln == nil {
		return
	}
	// Connection caps on whatever listener was bound or inherited; the
	// server's Shutdown closes this wrapper too.
	ln := s.lim.Listen(s.ln, s.key, s.log)
	s.wg.Go(func() {
		var err error
		if s.tls != nil {
			err = s.srv.ServeTLS(ln, "", "")
		} else {
			err = s.srv.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) && !s.conns.Draining() {
			s.log.Error("edge listener stopped", "err", err)
		}
	})
}

// shutdown drains (internal/drain): it stops accepting, lets requests in
// flight finish until ctx ends, then closes every connection. Hijacked
// connections (WebSockets) are not waited for: the base context is
// cancelled at the end, which makes the proxy close them.
func (s *server) shutdown(ctx context.Context) error {
	err := s.conns.Shutdown(ctx, s.srv, s.ln)
	s.base()
	if err != nil { // requests still running at the deadline: cut them
		s.log.Warn("drain: requests still running at the deadline are cut", "deadline", drainTimeout)
		if err = s.srv.Close(); errors.Is(err, net.ErrClosed) {
			err = nil
		}
	}
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("%s: close: %w", s.key, err)
	}
	return nil
}

func (s *server) closeListener() {
	if s.ln != nil {
		s.ln.Close()
	}
}

func (s *server) addr() string {
	if s == nil {
		return ""
	}
	return localAddr(s.ln)
}

// serverLog takes http.Server's own log lines: failed TLS handshakes are
// routine on a public port (scanners, clients that distrust the
// certificate) and go to debug; anything else (accept errors such as
// running out of file descriptors) is a warning.
type serverLog struct{ log *slog.Logger }

func (l serverLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if strings.Contains(msg, "TLS handshake error") {
		level = slog.LevelDebug
	}
	l.log.Log(context.Background(), level, msg)
	return len(p), nil
}

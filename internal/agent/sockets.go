package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nodeagent/nodeagent/internal/drain"
)

// listenTCP binds the listener of a config key (api.listen,
// cluster.listen) through Options.Listen, which reuses the sockets kept
// across a restart; the error names the key.
func (a *Agent) listenTCP(key, addr string) (net.Listener, error) {
	listen := a.opts.Listen
	if listen == nil {
		listen = func(_, addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
	}
	ln, err := listen(key, addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return ln, nil
}

// checkBackendOnce records a first backend check before the API serves, so
// that /readyz never fails with "not checked yet": after a restart the
// load balancer's first probe would take a node that was in sync out.
func (f *front) checkBackendOnce(ctx context.Context) {
	err := f.edge.CheckBackend(ctx)
	f.backend.Store(&backendState{err: err, at: time.Now()})
	if err != nil {
		f.a.log.Warn("backend down", "err", err)
	} else {
		f.a.log.Info("backend up", "backend", f.a.cfg.Edge.Backend)
	}
}

// drainAPI makes the API servers drain when the agent closes
// (internal/drain), like the edge: a load balancer's probe or a peer's
// request on a keep-alive connection is answered, never cut.
func (a *Agent) drainAPI() {
	a.apiDrains = map[*http.Server]apiDrain{
		a.localSrv:   {conns: drain.Track(a.localSrv), ln: a.localLn},
		a.clusterSrv: {conns: drain.Track(a.clusterSrv), ln: a.clusterLn},
	}
}

type apiDrain struct {
	conns *drain.Conns
	ln    net.Listener
}

// shutdownAPI drains srv until ctx ends (then the caller cuts it).
func (a *Agent) shutdownAPI(ctx context.Context, srv *http.Server) error {
	d, ok := a.apiDrains[srv]
	if !ok {
		return srv.Shutdown(ctx)
	}
	return d.conns.Shutdown(ctx, srv, d.ln)
}

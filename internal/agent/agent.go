// Package agent wires nodeagent's components together: configuration,
// cluster identity, gossip and the cluster state, the role of the node (a
// controller with the mirror store, the Moodle dataroot, dumps and the
// procedures; or a web node with releases, the syncer and the edge) and
// the API servers. It is the only package that knows them all; each
// component knows none of the others.
//
// agent.go wires; role.go picks the role; controller.go and web.go are the
// roles; status.go answers the API about this node (the readiness checks
// are in Health); meta.go keeps the gossip metadata current; keyring.go
// rotates the gossip keys, and the cluster certificates with them, on
// every live member.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/cluster"
	"github.com/nodeagent/nodeagent/internal/clustertls"
	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/durable"
	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/guard"
)

// Options are settings that do not come from the config file.
type Options struct {
	// Key overrides gossip.key_file (dev and tests).
	Key []byte
	// Token overrides api.token_file (dev and tests).
	Token string
	// GossipTiming overrides the LAN timing (tests).
	GossipTiming gossip.Timing
	// WrapPeerTransport, when set, wraps the transport of agent-to-agent
	// calls (tests cut a node off from the controller with it).
	WrapPeerTransport func(http.RoundTripper) http.RoundTripper
	// SyncRetryMin and SyncRetryMax bound the web syncer's back-off.
	SyncRetryMin, SyncRetryMax time.Duration
	ACME                       ACMETuning // tests: short-lived certificates
	// ClusterCertLifetime overrides the lifetime of the agent's cluster
	// certificate (tests; clustertls.DefaultLifetime otherwise).
	ClusterCertLifetime time.Duration
	Version             string
	Logger              *slog.Logger
	// Listen binds the TCP listener of a config key (api.listen,
	// cluster.listen, edge.https, edge.http); nil = net.Listen. `run`
	// passes one that reuses the sockets kept across a restart.
	Listen func(key, addr string) (net.Listener, error)
}

// Agent is one running nodeagent.
type Agent struct {
	cfg  *config.Config
	opts Options
	log  *slog.Logger

	id     *clustertls.Identity
	keys   agentKeyring // the gossip keys id and gossip follow
	peers  *http.Client // agent-to-agent calls, mutual TLS
	wire   wireCounter  // bytes of those calls
	gossip *gossip.Gossip
	state  *cluster.State // the cluster-wide state, in gossip registers
	role   role           // *controller or *web

	metrics *metrics  // its own registry, served on the local API
	view    viewState // history and member reports (GET /v1/history, /v1/nodes)

	localLn, clusterLn   net.Listener
	localSrv, clusterSrv *http.Server
	apiDrains            map[*http.Server]apiDrain

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	drained    bool
	maint      maintApplied    // the maintenance state this node applies
	maintMu    sync.Mutex      // serialises applying it
	poke       chan struct{}   // wakes the watch loop to advertise metadata
	lastMeta   gossip.NodeMeta // owned by the watch loop
	metaFrozen atomic.Bool     // tests: stop advertising metadata changes
	closeOnce  sync.Once
	closeErr   error
}

// New returns an agent for cfg. It does no I/O.
func New(cfg *config.Config, opts Options) *Agent {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{cfg: cfg, opts: opts, log: log.With("node", cfg.Node)}
	a.metrics = newMetrics(a)
	return a
}

// Open starts the agent: secrets, listeners, the role's local parts
// (mirror, database), gossip, the role's cluster parts (target, edge), API.
// On error everything opened so far is closed.
func (a *Agent) Open(ctx context.Context) (err error) {
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.poke = make(chan struct{}, 1)
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if a.role, err = newRole(a); err != nil {
		return err
	}
	key, token, err := a.secrets()
	if err != nil {
		return err
	}
	// A kill during one of the agent's writes (drain, follow-up, keyring,
	// certificates) leaves its temporary copy behind.
	for _, dir := range []string{a.cfg.DataDir, filepath.Join(a.cfg.DataDir, "certs")} {
		if err := durable.RemoveTemps(dir); err != nil {
			return fmt.Errorf("remove what interrupted writes left in %s: %w", dir, err)
		}
	}
	if err := a.loadDrain(); err != nil {
		return err
	}
	if err := a.openIdentity(ctx, key); err != nil {
		return err
	}
	a.peers = a.id.HTTPClient(a.wire.dial)
	if a.opts.WrapPeerTransport != nil {
		a.peers.Transport = a.opts.WrapPeerTransport(a.peers.Transport)
	}
	if err := a.listen(); err != nil {
		return err
	}
	if err := a.role.openLocal(ctx); err != nil {
		return err
	}
	if err := a.openGossip(ctx, key); err != nil {
		return err
	}
	// maintenance.allow means the same wherever it is set: every node
	// announces its own list, and the edges take them all.
	if err := a.state.SetAllow(a.cfg.Node, a.cfg.Maintenance.Allow); err != nil {
		return fmt.Errorf("maintenance.allow: %w", err)
	}
	if err := a.role.openCluster(ctx); err != nil {
		return err
	}
	a.openView()
	a.serve(token)
	a.startCleanup()
	a.wg.Add(1)
	go a.watch()
	a.startSplitWatch()
	a.log.Info("agent started", "role", a.cfg.Role, "gossip", a.gossip.Addr(),
		"cluster_api", a.ClusterAddr(), "local_api", a.LocalAddr())
	return nil
}

func (a *Agent) secrets() ([]byte, string, error) {
	key := a.opts.Key
	if key == nil {
		k, err := a.cfg.GossipKey()
		if err != nil {
			return nil, "", err
		}
		key = k
	}
	token := a.opts.Token
	if token == "" {
		t, err := a.cfg.APIToken()
		if err != nil {
			return nil, "", err
		}
		token = t
	}
	return key, token, nil
}

func (a *Agent) listen() error {
	var err error
	if a.localLn, err = a.listenTCP("api.listen", a.cfg.API.Listen); err != nil {
		return err
	}
	a.clusterLn, err = a.listenTCP("cluster.listen", a.cfg.Cluster.Listen)
	return err
}

func (a *Agent) mirrorDir() string { return filepath.Join(a.cfg.DataDir, "mirror") }

func (a *Agent) openGossip(ctx context.Context, key []byte) error {
	a.gossip = gossip.New(gossip.Config{
		Name:      a.cfg.Node,
		Bind:      a.cfg.Gossip.Bind,
		Advertise: a.cfg.Gossip.Advertise,
		Join:      a.cfg.Gossip.Join,
		Key:       key,
		Keyring:   a.keys.ring,
		Meta:      a.localMeta(),
		StateFile: filepath.Join(a.cfg.DataDir, "gossip-state.json"),
		Timing:    a.opts.GossipTiming,
		Logger:    a.log,
	})
	a.state = cluster.New(a.gossip, a.log)
	if err := a.gossip.Open(ctx); err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	// The cluster API address others use: the gossip advertise host with the
	// cluster API port.
	if err := a.gossip.SetMeta(a.localMeta()); err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	return nil
}

func (a *Agent) serve(token string) {
	cfg := api.Config{
		Node: a, Token: token, Logger: a.log,
		Meta:    a.localMeta,
		Metrics: a.metrics.handler(), ObserveRequest: a.metrics.observeRequest,
		View:       a,
		VerifyPeer: a.id.Verified,
		Keyring:    a,
		Forget:     a,
	}
	a.role.apiConfig(&cfg)
	srv := api.New(cfg)
	// Header limits, deadlines that trail the progress of bodies and
	// answers, connection caps (internal/guard), on whatever listeners
	// were bound or inherited.
	local, cluster := guard.Local(), guard.Cluster()
	a.localSrv = local.Server(srv.LocalHandler())
	a.clusterSrv = cluster.Server(srv.ClusterHandler())
	a.clusterSrv.TLSConfig = a.id.ServerConfig()
	a.drainAPI()
	a.goServe(a.localSrv, local.Listen(a.localLn, "api.listen", a.log), false)
	a.goServe(a.clusterSrv, cluster.Listen(a.clusterLn, "cluster.listen", a.log), true)
}

func (a *Agent) goServe(srv *http.Server, ln net.Listener, tls bool) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		var err error
		if tls {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) { // closed by a drain
			a.log.Error("api server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
}

// LocalAddr is the bound address of the local API.
func (a *Agent) LocalAddr() string { return a.localLn.Addr().String() }

// ClusterAddr is the bound address of the cluster API.
func (a *Agent) ClusterAddr() string { return a.clusterLn.Addr().String() }

// GossipAddr is the bound gossip address.
func (a *Agent) GossipAddr() string { return a.gossip.Addr() }

// Close stops the agent: API servers, the role's loops, gossip (leaving
// the cluster), the cluster identity's renewal, then the role's stores; it
// keeps the first error.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		if a.cancel != nil {
			a.cancel()
		}
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, srv := range []*http.Server{a.clusterSrv, a.localSrv} {
			if srv != nil && a.shutdownAPI(shut, srv) != nil {
				// Requests still running (a long content fetch) are cut:
				// what they use is closed next.
				a.log.Warn("API shutdown: closing open requests")
				srv.Close()
			}
		}
		for _, ln := range []net.Listener{a.clusterLn, a.localLn} {
			if ln != nil {
				ln.Close() // already closed when the server ran
			}
		}
		if a.role != nil {
			a.keep(a.role.stop())
		}
		a.wg.Wait()
		if a.role != nil {
			a.keep(a.role.closeCluster())
		}
		if a.gossip != nil {
			a.keep(a.gossip.Close())
		}
		if a.id != nil {
			a.keep(a.id.Close()) // its certificate renewal
		}
		// Last (a web node's edge among them, after the loops that reload
		// its certificate: it serves clients while the rest stops, then
		// drains).
		if a.role != nil {
			a.keep(a.role.closeLocal())
		}
	})
	return a.closeErr
}

func (a *Agent) keep(err error) {
	if err != nil && a.closeErr == nil {
		a.closeErr = err
	}
}

// goRun runs f in a goroutine the agent waits for at Close.
func (a *Agent) goRun(f func()) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		f()
	}()
}

// Package agent wires nodeagent's components together: configuration,
// cluster identity, gossip, the mirror (store on the controller, releases and
// syncer on web nodes) and the API servers. It is the only package that knows
// them all; each component knows none of the others.
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
	"github.com/nodeagent/nodeagent/internal/clustertls"
	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/mirror"
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
	Version                    string
	Logger                     *slog.Logger
}

// Agent is one running nodeagent.
type Agent struct {
	cfg  *config.Config
	opts Options
	log  *slog.Logger

	id     *clustertls.Identity
	peers  *http.Client // agent-to-agent calls, mutual TLS
	wire   wireCounter  // bytes of those calls
	gossip *gossip.Gossip
	store  *mirror.Store    // controller
	rels   *mirror.Releases // web
	syncer *mirror.Syncer   // web
	front  front            // web with an edge section

	metrics *metrics   // its own registry, served on the local API
	db      *dbService // controller with a db section

	localLn, clusterLn   net.Listener
	localSrv, clusterSrv *http.Server

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu           sync.Mutex
	target       *api.RevRef // cluster target as last seen
	behindSince  time.Time   // web: when applied first differed from target
	drained      bool
	maintApplied uint64 // clock of the maintenance state applied
	maintActive  bool
	deploys      deployRuns
	poke         chan struct{}   // wakes the watch loop to advertise metadata
	lastMeta     gossip.NodeMeta // owned by the watch loop
	metaFrozen   atomic.Bool     // tests: stop advertising metadata changes
	closeOnce    sync.Once
	closeErr     error
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

const (
	roleController = "controller"
	roleWeb        = "web"
	// targetKey is the gossip register holding the cluster target revision.
	targetKey = "target"
)

// Open starts the agent: secrets, listeners, mirror, gossip, API.
// On error everything opened so far is closed.
func (a *Agent) Open(ctx context.Context) (err error) {
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.poke = make(chan struct{}, 1)
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	key, token, err := a.secrets()
	if err != nil {
		return err
	}
	if err := a.loadDrain(); err != nil {
		return err
	}
	if err := a.checkDataroot(); err != nil {
		return err
	}
	if a.id, err = clustertls.New(key, a.cfg.Node); err != nil {
		return err
	}
	a.peers = a.id.HTTPClient()
	a.wire.instrument(a.peers)
	if a.opts.WrapPeerTransport != nil {
		a.peers.Transport = a.opts.WrapPeerTransport(a.peers.Transport)
	}
	if err := a.listen(); err != nil {
		return err
	}
	if err := a.openMirror(ctx); err != nil {
		return err
	}
	if err := a.openDB(ctx); err != nil {
		return err
	}
	if err := a.openGossip(ctx, key); err != nil {
		return err
	}
	if err := a.openEdge(ctx); err != nil {
		return err
	}
	a.serve(token)
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
	if a.localLn, err = net.Listen("tcp", a.cfg.API.Listen); err != nil {
		return fmt.Errorf("api.listen: %w", err)
	}
	if a.clusterLn, err = net.Listen("tcp", a.cfg.Cluster.Listen); err != nil {
		return fmt.Errorf("cluster.listen: %w", err)
	}
	return nil
}

func (a *Agent) mirrorDir() string { return filepath.Join(a.cfg.DataDir, "mirror") }

func (a *Agent) openMirror(ctx context.Context) error {
	m := a.cfg.Mirror
	switch a.cfg.Role {
	case roleController:
		a.store = mirror.NewStore(mirror.StoreConfig{
			Dir: a.mirrorDir(), Source: m.Source, Exclude: m.Exclude, Keep: m.Keep, Logger: a.log,
		})
		if err := a.store.Open(ctx); err != nil {
			return fmt.Errorf("mirror store: %w", err)
		}
	case roleWeb:
		a.rels = mirror.NewReleases(mirror.ReleasesConfig{
			Dir: a.mirrorDir(), Target: m.Target, Keep: m.Keep, AfterSwitch: m.AfterSwitch, Logger: a.log,
		})
		if err := a.rels.Open(ctx); err != nil {
			return fmt.Errorf("mirror releases: %w", err)
		}
		a.syncer = mirror.NewSyncer(mirror.SyncerConfig{
			Releases: a.rels, Source: a.source, OnApplied: a.applied, OnAttempt: a.metrics.syncAttempt, Logger: a.log,
			RetryMin: a.opts.SyncRetryMin, RetryMax: a.opts.SyncRetryMax,
		})
		if err := a.syncer.Open(ctx); err != nil {
			return fmt.Errorf("mirror syncer: %w", err)
		}
	default:
		return fmt.Errorf("role: unknown role %q", a.cfg.Role)
	}
	return nil
}

func (a *Agent) openGossip(ctx context.Context, key []byte) error {
	a.gossip = gossip.New(gossip.Config{
		Name:      a.cfg.Node,
		Bind:      a.cfg.Gossip.Bind,
		Advertise: a.cfg.Gossip.Advertise,
		Join:      a.cfg.Gossip.Join,
		Key:       key,
		Meta:      a.localMeta(),
		StateFile: filepath.Join(a.cfg.DataDir, "gossip-state.json"),
		Timing:    a.opts.GossipTiming,
		Logger:    a.log,
	})
	if err := a.gossip.Open(ctx); err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	// The cluster API address others use: the gossip advertise host with the
	// cluster API port.
	if err := a.gossip.SetMeta(a.localMeta()); err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	if a.store != nil {
		return a.initTarget()
	}
	return nil
}

func (a *Agent) serve(token string) {
	srv := api.New(api.Config{
		Node: a, Token: token, Logger: a.log,
		Mirror:  a.mirrorHandler(),
		Meta:    a.localMeta,
		Metrics: a.metrics.handler(), ObserveRequest: a.metrics.observeRequest,
		Certs:     a.certService(),
		CertStore: a.certStoreHandler(),
		Dumps:     a.dumpService(),
	})
	a.localSrv = newHTTPServer(srv.LocalHandler())
	a.clusterSrv = newHTTPServer(srv.ClusterHandler())
	a.clusterSrv.TLSConfig = a.id.ServerConfig()
	a.goServe(a.localSrv, a.localLn, false)
	a.goServe(a.clusterSrv, a.clusterLn, true)
}

func (a *Agent) mirrorHandler() http.Handler {
	if a.store == nil {
		return nil
	}
	return a.store.Handler()
}

func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
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
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
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

// Close stops the agent: API servers, syncer, gossip (leaving the cluster),
// store; it keeps the first error.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		if a.cancel != nil {
			a.cancel()
		}
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, srv := range []*http.Server{a.clusterSrv, a.localSrv} {
			if srv != nil && srv.Shutdown(shut) != nil {
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
		if a.syncer != nil {
			a.keep(a.syncer.Close())
		}
		a.wg.Wait()
		a.closeEdge() // after the loops that reload its certificate
		a.keep(a.closeDB())
		if a.gossip != nil {
			a.keep(a.gossip.Close())
		}
		if a.store != nil {
			a.keep(a.store.Close())
		}
	})
	return a.closeErr
}

func (a *Agent) keep(err error) {
	if err != nil && a.closeErr == nil {
		a.closeErr = err
	}
}

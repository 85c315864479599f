// Package certs owns the edge's TLS certificates. Sources, in order:
// manual files (edge.cert_file/edge.key_file, watched and hot-reloaded),
// ACME through caddyserver/certmagic with a certmagic.Storage the caller
// supplies (cluster-shared: one node orders, every node serves), or a
// self-signed certificate persisted in its directory. It also provides both
// ends of that cluster storage: StoreHandler (the controller's FileStorage
// behind HTTP, with leased locks) and ClusterStorage (the client web nodes
// use).
//
// It opens no listener and knows nothing of gossip or the API: the agent
// announces renewals (OnObtained) and calls Reload when another node
// announced one.
package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
)

// Sources.
const (
	SourceManual     = "manual"
	SourceACME       = "acme"
	SourceSelfSigned = "self-signed"
)

// Config configures a Manager.
type Config struct {
	// Dir holds this node's own certificate files (the self-signed pair).
	Dir string
	// Domains are the names served; the first is the default for
	// handshakes without SNI (load balancer probes by IP).
	Domains []string
	// CertFile and KeyFile select the manual source.
	CertFile, KeyFile string
	// ACME, when set (and no manual files), selects the ACME source.
	ACME *ACME
	// Node names the self-signed certificate when there are no Domains.
	Node string
	// PollInterval is how often manual files are checked (default 500ms).
	PollInterval time.Duration
	// OnObtained is called after this node obtained or renewed a
	// certificate and stored it: the agent announces it so the others
	// Reload. It must not block for long.
	OnObtained func(Obtained)
	Logger     *slog.Logger
}

// ACME configures the ACME source.
type ACME struct {
	Email string
	CA    string // directory URL; "" = Let's Encrypt
	// CARoot is PEM of the root that signs the CA's own HTTPS (a private
	// ACME server); nil = the system roots.
	CARoot []byte
	// Storage is shared by every node of the cluster.
	Storage certmagic.Storage
	// HTTPPort and TLSPort are the edge's ports, so certmagic never binds
	// its own challenge listeners on them; ListenHost their host. They are
	// read by Open, so a caller may set them once its listeners are bound.
	// HTTPPort 0 means no plain-HTTP listener: no HTTP-01 challenges (only
	// TLS-ALPN-01), rather than certmagic binding port 80 itself.
	HTTPPort, TLSPort int
	ListenHost        string

	// Tuning, for tests: renewal check interval (default 10 min), renewal
	// window ratio (default 1/3 of the lifetime left), and ARI off.
	RenewCheckInterval time.Duration
	RenewalWindowRatio float64
	DisableARI         bool
}

// Manager serves the certificate of one node's edge.
type Manager struct {
	cfg    Config
	log    *slog.Logger
	source string

	cert    atomic.Pointer[tls.Certificate] // manual or self-signed; the ACME fallback
	acme    *acmeSource
	manual  *manualSource
	mu      sync.Mutex
	lastErr error
	errTime time.Time
	loaded  time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New returns a Manager for cfg. It does no I/O.
func New(cfg Config) *Manager {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 500 * time.Millisecond
	}
	m := &Manager{cfg: cfg, log: log.With("component", "certs")}
	switch {
	case cfg.CertFile != "":
		m.source = SourceManual
	case cfg.ACME != nil:
		m.source = SourceACME
	default:
		m.source = SourceSelfSigned
	}
	return m
}

// Source is the configured source: manual, acme or self-signed.
func (m *Manager) Source() string { return m.source }

// Open loads the certificate of the source and starts watching files (manual)
// or managing certificates (ACME). A manual pair that cannot be loaded is an
// error naming the key; ACME orders in the background and serves the
// self-signed certificate until it has one.
func (m *Manager) Open(ctx context.Context) error {
	m.ctx, m.cancel = context.WithCancel(context.Background())
	switch m.source {
	case SourceManual:
		m.manual = &manualSource{m: m}
		if err := m.manual.open(); err != nil {
			return err
		}
		m.goRun(m.manual.watch)
	case SourceACME:
		if len(m.cfg.Domains) == 0 {
			return errors.New("edge.domains: required for ACME (edge.acme)")
		}
		if err := m.loadSelfSigned(); err != nil {
			return err
		}
		a := &acmeSource{m: m}
		if err := a.open(ctx); err != nil {
			return err
		}
		m.acme = a
	default:
		if err := m.loadSelfSigned(); err != nil {
			return err
		}
	}
	m.log.Info("certificate source", "source", m.source, "names", m.names())
	return nil
}

func (m *Manager) goRun(f func(ctx context.Context)) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f(m.ctx)
	}()
}

// Close stops watching and managing; idempotent.
func (m *Manager) Close() error {
	m.once.Do(func() {
		if m.cancel != nil {
			m.cancel()
		}
		m.wg.Wait()
		if m.acme != nil {
			m.acme.close()
		}
	})
	return nil
}

// names are the names the certificate is for.
func (m *Manager) names() []string {
	if len(m.cfg.Domains) > 0 {
		return m.cfg.Domains
	}
	node := m.cfg.Node
	if node == "" {
		node = "localhost"
	}
	return []string{node, "localhost"}
}

// TLSConfig is the server configuration of the edge: TLS 1.2+, h2 and
// http/1.1 (and acme-tls/1 with ACME), certificates chosen per handshake so
// a replaced certificate serves new handshakes at once.
func (m *Manager) TLSConfig() *tls.Config {
	protos := []string{"h2", "http/1.1"}
	if m.source == SourceACME {
		protos = append(protos, "acme-tls/1")
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     protos,
		GetCertificate: m.getCertificate,
	}
}

// getCertificate serves TLS-ALPN-01 challenges and the ACME certificate
// when there is one; otherwise the manual or self-signed certificate.
func (m *Manager) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if m.acme != nil {
		if isACMEChallenge(hello) {
			return m.acme.cfg.GetCertificate(hello)
		}
		if c := m.acme.served(hello); c != nil {
			return c, nil
		}
	}
	c := m.cert.Load()
	if c == nil {
		return nil, errors.New("no certificate loaded")
	}
	return c, nil
}

// HTTPChallengeHandler answers ACME HTTP-01 challenges (from this node's
// memory or the shared storage) and passes everything else to next. It may
// be built before Open.
func (m *Manager) HTTPChallengeHandler(next http.Handler) http.Handler {
	if m.source != SourceACME {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := m.acme; a != nil && a.issuer.HandleHTTPChallenge(w, r) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Reload reloads the certificate now: the manual files, or the ACME
// certificates from the shared storage (after another node renewed them),
// or the self-signed pair. An error leaves the served certificate as it is.
func (m *Manager) Reload(ctx context.Context) error {
	var err error
	switch m.source {
	case SourceManual:
		err = m.manual.reload()
	case SourceACME:
		err = m.acme.reload(ctx)
	default:
		err = m.loadSelfSigned()
	}
	if err != nil {
		return fmt.Errorf("reload %s certificate: %w", m.source, err)
	}
	return nil
}

// setErr records the last error (nil clears it).
func (m *Manager) setErr(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastErr = err
	if err != nil {
		m.errTime = time.Now()
	}
}

// serve makes c the certificate served by the manual and self-signed
// sources (and the ACME fallback).
func (m *Manager) serve(c *tls.Certificate) {
	m.cert.Store(c)
	m.touch()
}

// touch records that the served certificate changed.
func (m *Manager) touch() {
	m.mu.Lock()
	m.loaded = time.Now()
	m.mu.Unlock()
}

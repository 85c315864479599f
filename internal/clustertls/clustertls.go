// Package clustertls gives agents a TLS identity for agent-to-agent traffic
// on the cluster API, derived from the gossip keys every member already
// holds.
//
// Each gossip key (32 secret bytes) deterministically yields a cluster CA
// key. An agent trusts the CAs of every key of its keyring and issues
// itself a short-lived leaf certificate (hours) from the CA of the primary
// key, renewed before it expires. Servers present that leaf and verify
// client certificates when given; clients verify the server against the
// trusted CAs. So only holders of an installed gossip key — the same trust
// boundary as the encrypted gossip — can read manifests and content (which
// include config.php), and a key removed from the keyring stops working for
// certificates at once: its CA is no longer trusted, for new connections
// and for every request on open ones (see Verified).
//
// It owns no listener and touches no files.
package clustertls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ServerName is the DNS name in every agent certificate; clients verify it
// instead of the peer's address, which changes with autoscaling.
const ServerName = "nodeagent.cluster"

// Defaults of Config.
const (
	DefaultLifetime = 12 * time.Hour
	// backdate allows for clocks that run behind the issuer's.
	backdate = time.Hour
	// retryRenew is how soon a failed renewal is tried again.
	retryRenew = time.Minute
)

// Config configures an Identity.
type Config struct {
	Node string // the leaf's common name
	// Lifetime of a leaf certificate (DefaultLifetime when zero). A leaf is
	// renewed once half of it has passed.
	Lifetime time.Duration
	Logger   *slog.Logger
}

// Identity is one agent's view of the cluster PKI: the trusted CAs (one
// per installed gossip key) and its own leaf, both replaced as keys change
// and the leaf ages.
type Identity struct {
	cfg Config
	log *slog.Logger

	mu    sync.Mutex // serialises changes of st
	st    atomic.Pointer[state]
	gen   atomic.Uint64 // bumped on every change of st: clients reconnect
	renew chan struct{} // wakes the renewal loop after a change

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// state is an immutable snapshot: handshakes read it without locks.
type state struct {
	cas      map[string]*authority // by CA subject key id
	pool     *x509.CertPool
	primary  *authority
	leaf     tls.Certificate
	notAfter time.Time
	issued   time.Time
}

// Key is one gossip key: its secret bytes and the name it is reported by
// (its fingerprint).
type Key struct {
	Name   string
	Secret []byte
}

// New derives the CAs of keys (the primary key first) and issues a leaf
// from the primary's. It does no I/O and starts nothing; Open starts the
// renewal.
func New(cfg Config, keys []Key) (*Identity, error) {
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = DefaultLifetime
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	id := &Identity{cfg: cfg, log: log, renew: make(chan struct{}, 1)}
	if err := id.SetKeys(keys); err != nil {
		return nil, err
	}
	return id, nil
}

// SetKeys makes the CAs of keys the trusted ones and the first key's CA the
// issuer. The leaf is issued again when the issuer changes; a CA dropped
// from keys is distrusted at once.
func (id *Identity) SetKeys(keys []Key) error {
	if len(keys) == 0 {
		return errors.New("cluster identity: no gossip key")
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	old := id.st.Load()
	st := &state{cas: make(map[string]*authority, len(keys)), pool: x509.NewCertPool()}
	for i, k := range keys {
		ca, err := deriveCA(k)
		if err != nil {
			return err
		}
		st.cas[ca.keyID()] = ca
		st.pool.AddCert(ca.cert)
		if i == 0 {
			st.primary = ca
		}
	}
	if old != nil && old.primary.keyID() == st.primary.keyID() {
		st.leaf, st.notAfter, st.issued = old.leaf, old.notAfter, old.issued
	} else if err := id.issueLocked(st); err != nil {
		return err
	}
	id.st.Store(st)
	id.gen.Add(1)
	id.wake()
	return nil
}

// Renew issues a new leaf from the primary CA now.
func (id *Identity) Renew() error {
	id.mu.Lock()
	defer id.mu.Unlock()
	st := *id.st.Load()
	if err := id.issueLocked(&st); err != nil {
		return err
	}
	id.st.Store(&st)
	id.gen.Add(1)
	id.wake()
	return nil
}

func (id *Identity) issueLocked(st *state) error {
	now := time.Now()
	leaf, err := issueLeaf(st.primary, id.cfg.Node, now.Add(-backdate), now.Add(id.cfg.Lifetime))
	if err != nil {
		return err
	}
	st.leaf, st.notAfter, st.issued = leaf, now.Add(id.cfg.Lifetime), now
	return nil
}

func (id *Identity) wake() {
	select {
	case id.renew <- struct{}{}:
	default:
	}
}

// Leaf describes the current leaf certificate.
type Leaf struct {
	Issued   time.Time
	NotAfter time.Time
	// Issuer names the gossip key whose CA issued it.
	Issuer string
}

// Leaf returns the current leaf's expiry and issuer.
func (id *Identity) Leaf() Leaf {
	st := id.st.Load()
	return Leaf{Issued: st.issued, NotAfter: st.notAfter, Issuer: st.primary.name}
}

// Open starts renewing the leaf once half its lifetime has passed.
func (id *Identity) Open(ctx context.Context) error {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	id.cancel = cancel
	id.wg.Add(1)
	go func() {
		defer id.wg.Done()
		id.renewLoop(ctx)
	}()
	return nil
}

// Close stops the renewal. It is safe to call more than once, and without
// Open.
func (id *Identity) Close() error {
	id.closeOnce.Do(func() {
		if id.cancel != nil {
			id.cancel()
		}
		id.wg.Wait()
	})
	return nil
}

func (id *Identity) renewLoop(ctx context.Context) {
	for {
		st := id.st.Load()
		due := st.issued.Add(id.cfg.Lifetime / 2)
		t := time.NewTimer(time.Until(due))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-id.renew: // the leaf changed: compute the next due time
			t.Stop()
			continue
		case <-t.C:
		}
		if err := id.Renew(); err != nil {
			id.log.Error("renew cluster certificate", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(retryRenew):
			}
			continue
		}
		id.log.Info("cluster certificate renewed", "not_after", id.Leaf().NotAfter.Format(time.RFC3339))
	}
}

// ServerConfig is the TLS config of the cluster API listener: each
// handshake presents the current leaf and verifies a client certificate,
// when the client sends one, against the CAs trusted at that moment (load
// balancers probing /readyz send none; agent endpoints require one, see
// Verified).
func (id *Identity) ServerConfig() *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		st := id.st.Load()
		c := base.Clone()
		c.GetConfigForClient = nil
		c.Certificates = []tls.Certificate{st.leaf}
		c.ClientAuth = tls.VerifyClientCertIfGiven
		c.ClientCAs = st.pool
		return c, nil
	}
	return base
}

// ClientConfig is the TLS config for calls to other agents: the current
// leaf as client certificate, and the server verified against the CAs
// trusted at the handshake.
func (id *Identity) ClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			leaf := id.st.Load().leaf
			return &leaf, nil
		},
		// The standard verification with a fixed pool is replaced by
		// VerifyConnection with the current one.
		InsecureSkipVerify: true,
		VerifyConnection:   id.verifyServer,
	}
}

func (id *Identity) verifyServer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("cluster TLS: the server sent no certificate")
	}
	opts := x509.VerifyOptions{
		DNSName:       ServerName,
		Roots:         id.st.Load().pool,
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return fmt.Errorf("cluster TLS: server certificate: %w", err)
	}
	return nil
}

// Verified reports whether a request came with a client certificate of the
// cluster: verified at the handshake, and issued by a CA that is still
// trusted now (a key removed since stops open connections too).
func (id *Identity) Verified(r *http.Request) bool {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return false
	}
	// The chain ends at a CA of this agent's pool at the handshake; its
	// subject key id names the gossip key it derives from.
	chain := r.TLS.VerifiedChains[0]
	_, ok := id.st.Load().cas[string(chain[len(chain)-1].SubjectKeyId)]
	return ok
}

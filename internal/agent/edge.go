package agent

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/certs"
	"github.com/nodeagent/nodeagent/internal/cluster"
	"github.com/nodeagent/nodeagent/internal/edge"
)

// certExpiryWarn is how close to its end a certificate makes readiness warn.
const certExpiryWarn = 14 * 24 * time.Hour

// ACMETuning adjusts certmagic for tests (short-lived certificates).
type ACMETuning struct {
	RenewCheckInterval time.Duration
	RenewalWindowRatio float64
	DisableARI         bool
}

// front is a web node's edge: certificates, the TLS front, and the cluster
// state it follows.
type front struct {
	a         *Agent
	certs     *certs.Manager
	edge      *edge.Edge
	storage   *certs.ClusterStorage // ACME: the controller's certificate storage
	maint     atomic.Pointer[edge.Maintenance]
	backend   atomic.Pointer[backendState]
	certClock atomic.Uint64 // last certificate announcement handled
	reloading atomic.Bool

	mu          sync.Mutex
	src         cluster.Maintenance // what maint was built from
	configAllow []string
}

type backendState struct {
	err error
	at  time.Time
}

// openEdge starts the edge of a web node with an edge section: the
// certificate source, the listeners, and the backend check.
func (w *web) openEdge(ctx context.Context) error {
	a, ec := w.a, w.a.cfg.Edge
	if ec == nil {
		return nil
	}
	backend, err := url.Parse(ec.Backend)
	if err != nil {
		return fmt.Errorf("edge.backend: %w", err)
	}
	trusted, err := edge.ParsePrefixes(ec.TrustedProxies)
	if err != nil {
		return fmt.Errorf("edge.trusted_proxies: %w", err)
	}
	f := &front{a: a}
	w.front = f
	ccfg, err := f.certsConfig()
	if err != nil {
		return err
	}
	f.certs = certs.New(ccfg)
	f.maint.Store(&edge.Maintenance{})
	f.backend.Store(&backendState{err: fmt.Errorf("not checked yet")})
	f.edge, err = edge.New(edge.Config{
		HTTPS: ec.HTTPS, HTTP: ec.HTTP, Backend: backend,
		TLS: f.certs.TLSConfig(), ACME: f.certs.HTTPChallengeHandler,
		Maintenance: f.maintenance, MaintenancePage: ec.MaintenancePage,
		TrustedProxies: trusted, MaxConnsPerClient: ec.MaxConnsPerClient, Listen: a.opts.Listen, Logger: a.log,
	})
	if err != nil {
		return err
	}
	if err := f.edge.Listen(); err != nil {
		return err
	}
	if ccfg.ACME != nil {
		ccfg.ACME.ListenHost, ccfg.ACME.TLSPort = hostPort(f.edge.HTTPSAddr())
		_, ccfg.ACME.HTTPPort = hostPort(f.edge.HTTPAddr()) // 0 without edge.http: TLS-ALPN-01 only
	}
	if err := f.certs.Open(ctx); err != nil {
		return err
	}
	f.setMaintenance(a.state.Maintenance(), a.configAllow())
	f.edge.Serve()
	f.checkBackendOnce(ctx)
	a.goRun(f.checkBackend)
	a.log.Info("edge started", "https", f.edge.HTTPSAddr(), "http", f.edge.HTTPAddr(), "backend", ec.Backend,
		"certificate", f.certs.Source())
	return nil
}

// certsConfig builds the certificate manager's config; ACME when edge.acme
// names an email or a CA (and no manual files are set).
func (f *front) certsConfig() (certs.Config, error) {
	a, ec := f.a, f.a.cfg.Edge
	cfg := certs.Config{
		Dir: filepath.Join(a.cfg.DataDir, "certs"), Domains: ec.Domains, Node: a.cfg.Node,
		CertFile: ec.CertFile, KeyFile: ec.KeyFile, OnObtained: f.announceCertificate, Logger: a.log,
	}
	if ec.CertFile != "" || (ec.ACME.Email == "" && ec.ACME.CA == "") {
		return cfg, nil
	}
	var root []byte
	if ec.ACME.CARoot != "" {
		b, err := os.ReadFile(ec.ACME.CARoot)
		if err != nil {
			return cfg, fmt.Errorf("edge.acme.ca_root: %w", err)
		}
		root = b
	}
	f.storage = certs.NewClusterStorage(f.certStoreURL, a.peers, a.cfg.Node)
	t := a.opts.ACME
	cfg.ACME = &certs.ACME{
		Email: ec.ACME.Email, CA: ec.ACME.CA, CARoot: root, Storage: f.storage,
		RenewCheckInterval: t.RenewCheckInterval, RenewalWindowRatio: t.RenewalWindowRatio, DisableARI: t.DisableARI,
	}
	return cfg, nil
}

func hostPort(addr string) (string, int) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0
	}
	port, _ := strconv.Atoi(p)
	return host, port
}

// certStoreURL finds the controller's certificate storage through gossip.
func (f *front) certStoreURL() (string, error) {
	api, err := f.a.controllerAPI()
	if err != nil {
		return "", err
	}
	return "https://" + api + "/cluster/v1/certstore", nil
}

// close stops the edge, then the certificate manager and its storage, and
// keeps the first error.
func (f *front) close() error {
	var first error
	keep := func(err error) {
		if first == nil {
			first = err
		}
	}
	if f.edge != nil {
		keep(f.edge.Close())
	}
	if f.certs != nil {
		keep(f.certs.Close())
	}
	if f.storage != nil {
		keep(f.storage.Close())
	}
	return first
}

// edgeFront is the web role's edge, nil on a node without one.
func (a *Agent) edgeFront() *front {
	if w, ok := a.role.(*web); ok {
		return w.front
	}
	return nil
}

// EdgeAddr is the bound address of the edge's TLS listener ("" without an
// edge).
func (a *Agent) EdgeAddr() string {
	f := a.edgeFront()
	if f == nil {
		return ""
	}
	return f.edge.HTTPSAddr()
}

// ReloadCertificates reloads the edge's certificate (SIGHUP); without an
// edge it does nothing.
func (a *Agent) ReloadCertificates(ctx context.Context) error {
	f := a.edgeFront()
	if f == nil {
		return nil
	}
	return f.certs.Reload(ctx)
}

// announceCertificate is the certificate manager's callback after this node
// obtained or renewed a certificate in the cluster storage.
func (f *front) announceCertificate(ob certs.Obtained) {
	clock, err := f.a.state.AnnounceCertificate(cluster.Certificate{
		Names: ob.Names, Fingerprint: ob.Fingerprint, NotAfter: ob.NotAfter, Renewal: ob.Renewal,
	})
	if err != nil {
		f.a.log.Error("announce certificate", "err", err)
		return
	}
	f.certClock.Store(clock)
	f.a.log.Info("certificate announced", "names", ob.Names, "fingerprint", ob.Fingerprint, "renewal", ob.Renewal)
	f.a.announce()
}

// observeCertificate reloads from the cluster storage when another node
// announced a certificate this node does not serve.
func (f *front) observeCertificate() {
	a := f.a
	if f.certs.Source() != certs.SourceACME {
		return
	}
	ann, ok := a.state.Certificate()
	if !ok || ann.Clock == f.certClock.Load() {
		return
	}
	if ann.Node == a.cfg.Node || ann.Fingerprint == f.certs.State().Fingerprint {
		f.certClock.Store(ann.Clock)
		return
	}
	if !f.reloading.CompareAndSwap(false, true) {
		return // one reload at a time; the next round looks again
	}
	f.certClock.Store(ann.Clock)
	a.goRun(func() {
		defer f.reloading.Store(false)
		ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
		defer cancel()
		if err := f.certs.Reload(ctx); err != nil {
			a.log.Warn("reload announced certificate", "from", ann.Node, "err", err)
			return
		}
		a.log.Info("certificate reloaded", "announced_by", ann.Node, "fingerprint", f.certs.State().Fingerprint)
		a.announce()
	})
}

// maintenance is the edge's view of cluster maintenance: one atomic load.
func (f *front) maintenance() edge.Maintenance { return *f.maint.Load() }

// setMaintenance rebuilds the edge's maintenance state: site maintenance
// (the Moodle hold is the controller's), with the register's allow list
// plus configAllow, the cluster's maintenance.allow lists. A range that
// does not parse (another node wrote it) is left out alone and logged.
func (f *front) setMaintenance(m cluster.Maintenance, configAllow []string) {
	em := edge.Maintenance{Active: m.Active(time.Now()), Message: m.Message, Until: m.Until}
	allow, invalid := cluster.ParseAllow(m.Allow, configAllow)
	if len(invalid) > 0 {
		f.a.log.Warn("maintenance allow list: invalid CIDRs left out", "cidrs", invalid, "set_by", m.SetBy)
	}
	em.Allow = allow
	f.mu.Lock()
	f.src, f.configAllow = m, configAllow
	f.mu.Unlock()
	f.maint.Store(&em)
}

// followAllow rebuilds the edge's maintenance state when the cluster's
// maintenance.allow lists changed (a node announced a new one).
func (f *front) followAllow(configAllow []string) {
	f.mu.Lock()
	m, same := f.src, slices.Equal(f.configAllow, configAllow)
	f.mu.Unlock()
	if !same {
		f.setMaintenance(m, configAllow)
	}
}

// checkBackend asks the backend every second whether it answers, so
// readiness never waits for it.
func (f *front) checkBackend() {
	a := f.a
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		err := f.edge.CheckBackend(a.ctx)
		if a.ctx.Err() != nil {
			return
		}
		prev := f.backend.Swap(&backendState{err: err, at: time.Now()})
		if (prev.err == nil) != (err == nil) {
			if err != nil {
				a.log.Warn("backend down", "err", err)
			} else {
				a.log.Info("backend up", "backend", a.cfg.Edge.Backend)
			}
			a.announce()
		}
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checks adds the edge's readiness checks: edge:backend fails while the
// backend does not answer; edge:certificate warns when the certificate
// ends within 14 days, is not there yet (ACME), or a new one was refused.
func (f *front) checks(checks map[string][]api.Check) {
	now := time.Now()
	b := f.backend.Load()
	bc := api.Check{Status: api.StatusPass, Time: b.at, ObservedValue: f.a.cfg.Edge.Backend}
	if b.err != nil {
		bc.Status, bc.Output = api.StatusFail, b.err.Error()
	}
	checks["edge:backend"] = []api.Check{bc}

	st := f.certs.State()
	cc := api.Check{Status: api.StatusPass, Time: now, ObservedValue: st.NotAfter}
	switch left := st.NotAfter.Sub(now); {
	case st.Pending:
		cc.Status, cc.Output = api.StatusWarn, "no ACME certificate yet: serving a self-signed one"
	case left < certExpiryWarn:
		cc.Status, cc.Output = api.StatusWarn, fmt.Sprintf("certificate ends in %s (%s)", left.Round(time.Minute), st.NotAfter.Format(time.RFC3339))
	case st.LastError != "":
		cc.Status, cc.Output = api.StatusWarn, st.LastError
	}
	if st.Pending && st.LastError != "" {
		cc.Output += ": " + st.LastError
	}
	checks["edge:certificate"] = []api.Check{cc}
}

// certExpiry is the end of the served certificate, for the gossip
// metadata (0 while ACME has none yet).
func (f *front) certExpiry() int64 {
	st := f.certs.State()
	if st.Pending {
		return 0
	}
	return st.NotAfter.Unix()
}

// CertificateNotAfter is the expiry of the certificate the edge serves, by
// its first name (nodeagent_certificate_not_after_seconds); nil without an
// edge, and while ACME has no certificate yet (the self-signed stand-in's
// expiry would hide that from an expiry alert).
func (a *Agent) CertificateNotAfter() map[string]time.Time {
	f := a.edgeFront()
	if f == nil {
		return nil
	}
	st := f.certs.State()
	if st.Pending || st.NotAfter.IsZero() || len(st.Names) == 0 {
		return nil
	}
	return map[string]time.Time{st.Names[0]: st.NotAfter}
}

package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/certs"
	"github.com/nodeagent/nodeagent/internal/edge"
)

// certificateKey is the gossip register where a node announces a
// certificate it obtained or renewed in the cluster storage; the others
// reload it from there at once.
const certificateKey = "certificate"

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
	certs     *certs.Manager
	edge      *edge.Edge
	storage   *certs.ClusterStorage // ACME: the controller's certificate storage
	maint     atomic.Pointer[edge.Maintenance]
	maintSrc  atomic.Pointer[api.Maintenance] // what maint was built from
	backend   atomic.Pointer[backendState]
	certClock atomic.Uint64 // last certificate register handled
	reloading atomic.Bool
}

type backendState struct {
	err error
	at  time.Time
}

// openEdge starts the edge of a web node with an edge section: the
// certificate source, the listeners, and the backend check.
func (a *Agent) openEdge(ctx context.Context) error {
	ec := a.cfg.Edge
	if ec == nil {
		return nil
	}
	if a.cfg.Role != roleWeb {
		a.log.Warn("edge section ignored: only web nodes run the edge")
		return nil
	}
	f := &a.front
	backend, err := url.Parse(ec.Backend)
	if err != nil {
		return fmt.Errorf("edge.backend: %w", err)
	}
	trusted, err := edge.ParsePrefixes(ec.TrustedProxies)
	if err != nil {
		return fmt.Errorf("edge.trusted_proxies: %w", err)
	}
	ccfg, err := a.certsConfig()
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
		TrustedProxies: trusted, Listen: a.opts.Listen, Logger: a.log,
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
	a.updateEdgeMaintenance()
	f.edge.Serve()
	a.checkBackendOnce(ctx)
	a.wg.Add(1)
	go a.checkBackend()
	a.log.Info("edge started", "https", f.edge.HTTPSAddr(), "http", f.edge.HTTPAddr(), "backend", ec.Backend,
		"certificate", f.certs.Source())
	return nil
}

// certsConfig builds the certificate manager's config; ACME when edge.acme
// names an email or a CA (and no manual files are set).
func (a *Agent) certsConfig() (certs.Config, error) {
	ec := a.cfg.Edge
	cfg := certs.Config{
		Dir: filepath.Join(a.cfg.DataDir, "certs"), Domains: ec.Domains, Node: a.cfg.Node,
		CertFile: ec.CertFile, KeyFile: ec.KeyFile, OnObtained: a.announceCertificate, Logger: a.log,
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
	a.front.storage = certs.NewClusterStorage(a.certStoreURL, a.peers, a.cfg.Node)
	t := a.opts.ACME
	cfg.ACME = &certs.ACME{
		Email: ec.ACME.Email, CA: ec.ACME.CA, CARoot: root, Storage: a.front.storage,
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
func (a *Agent) certStoreURL() (string, error) {
	api, err := a.controllerAPI()
	if err != nil {
		return "", err
	}
	return "https://" + api + "/cluster/v1/certstore", nil
}

// controllerAPI is the cluster API address of a live controller.
func (a *Agent) controllerAPI() (string, error) {
	for _, m := range a.gossip.Members() {
		if m.Meta.Role == roleController && m.State == "alive" && m.Meta.API != "" {
			return m.Meta.API, nil
		}
	}
	return "", fmt.Errorf("no live controller in the cluster")
}

// certStoreHandler serves the cluster certificate storage (controller).
func (a *Agent) certStoreHandler() http.Handler {
	if a.store == nil {
		return nil
	}
	return certs.StoreHandler(filepath.Join(a.cfg.DataDir, "certs"), a.log)
}

// certService is the API's view of the certificates (nil without an edge).
func (a *Agent) certService() api.CertService {
	if a.front.certs == nil {
		return nil
	}
	return a.front.certs
}

// closeEdge stops the edge, then the certificate manager and its storage.
func (a *Agent) closeEdge() {
	f := &a.front
	if f.edge != nil {
		a.keep(f.edge.Close())
	}
	if f.certs != nil {
		a.keep(f.certs.Close())
	}
	if f.storage != nil {
		a.keep(f.storage.Close())
	}
}

// EdgeAddr is the bound address of the edge's TLS listener ("" without an
// edge).
func (a *Agent) EdgeAddr() string {
	if a.front.edge == nil {
		return ""
	}
	return a.front.edge.HTTPSAddr()
}

// ReloadCertificates reloads the edge's certificate (SIGHUP); without an
// edge it does nothing.
func (a *Agent) ReloadCertificates(ctx context.Context) error {
	if a.front.certs == nil {
		return nil
	}
	return a.front.certs.Reload(ctx)
}

// announceCertificate is the certificate manager's callback after this node
// obtained or renewed a certificate in the cluster storage.
func (a *Agent) announceCertificate(ob certs.Obtained) {
	if len(ob.Names) > 3 { // the register is a version signal: keep it small
		ob.Names = ob.Names[:3]
	}
	reg, err := a.gossip.Set(certificateKey, ob)
	if err != nil {
		a.log.Error("announce certificate", "err", err)
		return
	}
	a.front.certClock.Store(reg.Clock)
	a.log.Info("certificate announced", "names", ob.Names, "fingerprint", ob.Fingerprint, "renewal", ob.Renewal)
	a.announce()
}

// observeEdge follows the cluster for the edge: maintenance, and
// certificates announced by other nodes. Called by the watch loop.
func (a *Agent) observeEdge() {
	if a.front.certs == nil {
		return
	}
	a.updateEdgeMaintenance()
	a.observeCertificate()
}

// observeCertificate reloads from the cluster storage when another node
// announced a certificate this node does not serve.
func (a *Agent) observeCertificate() {
	f := &a.front
	if f.certs.Source() != certs.SourceACME {
		return
	}
	reg, ok := a.gossip.Get(certificateKey)
	if !ok || reg.Clock == f.certClock.Load() {
		return
	}
	ob, err := decodeCertificate(reg)
	if err != nil || reg.Node == a.cfg.Node ||
		ob.Fingerprint == f.certs.State().Fingerprint {
		f.certClock.Store(reg.Clock)
		return
	}
	if !f.reloading.CompareAndSwap(false, true) {
		return // one reload at a time; the next round looks again
	}
	f.certClock.Store(reg.Clock)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer f.reloading.Store(false)
		ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
		defer cancel()
		if err := f.certs.Reload(ctx); err != nil {
			a.log.Warn("reload announced certificate", "from", reg.Node, "err", err)
			return
		}
		a.log.Info("certificate reloaded", "announced_by", reg.Node, "fingerprint", f.certs.State().Fingerprint)
		a.announce()
	}()
}

// maintenance is the edge's view of cluster maintenance: one atomic load.
func (f *front) maintenance() edge.Maintenance { return *f.maint.Load() }

// updateEdgeMaintenance rebuilds the edge's maintenance state when the
// cluster's changed: the register's allow list plus maintenance.allow.
func (a *Agent) updateEdgeMaintenance() {
	f := &a.front
	m := a.maintenanceState()
	if old := f.maintSrc.Load(); old != nil && old.Clock == m.Clock && old.Active == m.Active {
		return
	}
	em, err := edgeMaintenance(m, a.cfg.Maintenance.Allow)
	if err != nil {
		a.log.Warn("maintenance allow list", "err", err)
	}
	f.maint.Store(&em)
	f.maintSrc.Store(&m)
}

// checkBackend asks the backend every second whether it answers, so
// readiness never waits for it.
func (a *Agent) checkBackend() {
	defer a.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		err := a.front.edge.CheckBackend(a.ctx)
		if a.ctx.Err() != nil {
			return
		}
		prev := a.front.backend.Swap(&backendState{err: err, at: time.Now()})
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

// edgeChecks adds the edge's readiness checks: edge:backend fails while
// the backend does not answer; edge:certificate warns when the certificate
// ends within 14 days, is not there yet (ACME), or a new one was refused.
func (a *Agent) edgeChecks(checks map[string][]api.Check) {
	f := &a.front
	if f.certs == nil {
		return
	}
	now := time.Now()
	b := f.backend.Load()
	bc := api.Check{Status: api.StatusPass, Time: b.at, ObservedValue: a.cfg.Edge.Backend}
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

// certificateState is the certificate in /v1/status (nil without an edge).
func (a *Agent) certificateState() *certs.State {
	if a.front.certs == nil {
		return nil
	}
	st := a.front.certs.State()
	return &st
}

// certExpiry is the end of the served certificate, for the gossip
// metadata (0 without an edge).
func (a *Agent) certExpiry() int64 {
	st := a.certificateState()
	if st == nil || st.Pending {
		return 0
	}
	return st.NotAfter.Unix()
}

// CertificateNotAfter is the expiry of the certificate the edge serves, by
// its first name (nodeagent_certificate_not_after_seconds); nil without an
// edge, and while ACME has no certificate yet (the self-signed stand-in's
// expiry would hide that from an expiry alert).
func (a *Agent) CertificateNotAfter() map[string]time.Time {
	st := a.certificateState()
	if st == nil || st.Pending || st.NotAfter.IsZero() || len(st.Names) == 0 {
		return nil
	}
	return map[string]time.Time{st.Names[0]: st.NotAfter}
}

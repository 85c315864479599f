package agent

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/cluster"
	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/mirror"
)

// web is the web role: it keeps mirror.target at the cluster target (the
// syncer), reports how far behind it is, and runs the edge when
// configured.
type web struct {
	a       *Agent
	rels    *mirror.Releases
	syncer  *mirror.Syncer
	audit   *mirror.Auditor // integrity of the served release (integrity.go)
	front   *front          // nil without an edge section
	peering peering         // content to and from peers (peers.go)

	mu     sync.Mutex
	target mirror.Revision // the cluster target last handed to the syncer
	behind time.Time       // when the applied release first differed from the target
}

var _ role = (*web)(nil)

func newWeb(a *Agent) *web { return &web{a: a} }

// openLocal opens the releases and starts the syncer (it waits for a
// target).
func (w *web) openLocal(ctx context.Context) error {
	m, a := w.a.cfg.Mirror, w.a
	if a.cfg.DB != nil {
		a.log.Warn("the db section is ignored on a web node: dumps run on the controller")
	}
	w.rels = mirror.NewReleases(mirror.ReleasesConfig{
		Dir: a.mirrorDir(), Target: m.Target, Keep: m.Keep, AfterSwitch: m.AfterSwitch, Logger: a.log,
	})
	if err := w.rels.Open(ctx); err != nil {
		return fmt.Errorf("mirror releases: %w", err)
	}
	w.openPeers()
	w.syncer = mirror.NewSyncer(mirror.SyncerConfig{
		Releases: w.rels, Source: w.contentSource, OnApplied: w.applied, OnAttempt: a.metrics.syncAttempt, Logger: a.log,
		RetryMin: a.opts.SyncRetryMin, RetryMax: a.opts.SyncRetryMax,
	})
	if err := w.syncer.Open(ctx); err != nil {
		return fmt.Errorf("mirror syncer: %w", err)
	}
	return w.openAudit(ctx)
}

// openCluster starts the edge, which follows the cluster's maintenance
// and certificate announcements.
func (w *web) openCluster(ctx context.Context) error { return w.openEdge(ctx) }

func (w *web) stop() error {
	err := w.closeAudit()
	if w.syncer == nil {
		return err
	}
	return errors.Join(err, w.syncer.Close())
}

func (w *web) closeCluster() error { return nil }

// closeLocal closes the edge, last of all: it serves clients while the
// rest of the agent stops, then drains.
func (w *web) closeLocal() error {
	if w.front == nil {
		return nil
	}
	return w.front.close()
}

func (w *web) apiConfig(cfg *api.Config) {
	cfg.Mirror = w.peering.server.Handler()
	if w.front != nil {
		cfg.Certs = w.front.certs
	}
	w.integrity(cfg)
}

// observe hands a new target to the syncer, tracks the lag, and lets the
// edge follow certificate announcements.
func (w *web) observe() {
	if t := w.a.currentTarget(); t != nil {
		w.mu.Lock()
		changed := w.target.ID != t.ID
		w.target = mirror.Revision{Seq: t.Seq, ID: t.ID}
		w.mu.Unlock()
		if changed {
			w.syncer.SetTarget(mirror.Revision{Seq: t.Seq, ID: t.ID})
		}
	}
	w.trackLag()
	if w.front != nil {
		w.front.followAllow(w.a.configAllow())
		w.front.observeCertificate()
	}
}

// applyMaintenance hands the maintenance state to the edge.
func (w *web) applyMaintenance(m cluster.Maintenance) (bool, error) {
	if w.front != nil {
		w.front.setMaintenance(m, w.a.configAllow())
	}
	return false, nil
}

// trackLag records when this web node started to be behind the target.
func (w *web) trackLag() {
	applied, ok := w.rels.Current()
	w.mu.Lock()
	behind := w.target.ID != "" && (!ok || applied.ID != w.target.ID)
	was := !w.behind.IsZero()
	switch {
	case !behind:
		w.behind = time.Time{}
	case !was:
		w.behind = time.Now()
	}
	w.mu.Unlock()
	if was != behind {
		w.a.announce()
	}
}

// applied is the syncer's callback after a switch.
func (w *web) applied(mirror.Revision) {
	// A sync grows the heap with the manifest and fetch buffers; give it
	// back now rather than when the scavenger gets to it, so an idle web
	// agent stays small.
	debug.FreeOSMemory()
	w.a.metrics.switches.Inc()
	w.trackLag()
	w.a.announce()
}

func (w *web) serving() (mirror.Revision, bool) { return w.rels.Current() }

func (w *web) behindSince() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.behind
}

func (w *web) revisions() []api.RevisionItem {
	applied, _ := w.rels.Current()
	revs := w.rels.List()
	items := make([]api.RevisionItem, len(revs))
	for i, r := range revs {
		items[i] = api.RevisionItem{Revision: r, Applied: r.ID == applied.ID}
	}
	return items
}

func (w *web) status(st *api.Status) {
	if p := w.rels.Progress(); p.Phase != "" {
		st.Sync = &p
	}
	w.peerStatus(st)
	if err, _ := w.syncer.LastError(); err != nil {
		st.SyncError = err.Error()
	}
	if w.front != nil {
		cs := w.front.certs.State()
		st.Certificate = &cs
	}
	w.integrityStatus(st)
}

// checkRevision fails when the node never synced, or has been behind the
// target for longer than mirror.max_lag while another live web node
// already serves the target (so that a controller outage or a bad publish
// never takes every node out of the load balancer at once).
func (w *web) checkRevision() api.Check {
	rs := w.a.revisionStatus()
	c := api.Check{Status: api.StatusPass, Time: time.Now()}
	if rs.Applied != nil {
		c.ObservedValue = rs.Applied.Seq
	}
	switch {
	case rs.Applied == nil:
		c.Status, c.Output = api.StatusFail, "no release applied yet"
	case rs.InSync || rs.Target == nil:
	case rs.LagSeconds > time.Duration(w.a.cfg.Mirror.MaxLag).Seconds():
		if peer := w.peerServing(rs.Target.ID); peer != "" {
			c.Status = api.StatusFail
			c.Output = fmt.Sprintf("behind target %d for %.0fs while %s serves it", rs.Target.Seq, rs.LagSeconds, peer)
		} else {
			c.Status = api.StatusWarn
			c.Output = fmt.Sprintf("behind target %d for %.0fs; no web node serves it yet", rs.Target.Seq, rs.LagSeconds)
		}
	default:
		c.Status = api.StatusWarn
		c.Output = fmt.Sprintf("syncing to target %d", rs.Target.Seq)
	}
	return c
}

// peerServing returns the name of another live web node serving id that is
// in the load balancer (ready, not drained): a peer that takes no traffic
// cannot stand in for this node.
func (w *web) peerServing(id string) string {
	if w.a.gossip == nil {
		return ""
	}
	for _, m := range w.a.gossip.Members() {
		if m.Name != w.a.cfg.Node && m.State == gossip.StateAlive && m.Meta.Role == config.RoleWeb &&
			m.Meta.Rev == id && m.Meta.Ready && !m.Meta.Drained {
			return m.Name
		}
	}
	return ""
}

func (w *web) checks(checks map[string][]api.Check) {
	if w.front != nil {
		w.front.checks(checks)
	}
	w.integrityChecks(checks)
}

func (w *web) meta(m *gossip.NodeMeta) {
	if w.front != nil {
		m.CertExpiry = w.front.certExpiry()
	}
}

// controllerAPI is the cluster API address of a live controller.
func (a *Agent) controllerAPI() (string, error) {
	if _, api := a.liveController(); api != "" {
		return api, nil
	}
	return "", fmt.Errorf("no live controller in the cluster")
}

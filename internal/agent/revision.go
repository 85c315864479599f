package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/mirror"
)

// clusterAPIAddr is the address other agents use for this node's cluster
// API: the listen address, or the gossip host when listening on all
// interfaces.
func (a *Agent) clusterAPIAddr() string {
	host, port, err := net.SplitHostPort(a.ClusterAddr())
	if err != nil {
		return a.ClusterAddr()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() && a.gossip != nil {
		if ghost, _, err := net.SplitHostPort(a.gossip.Addr()); err == nil {
			host = ghost
		}
	}
	return net.JoinHostPort(host, port)
}

// localMeta is what this node tells the cluster about itself.
func (a *Agent) localMeta() gossip.NodeMeta {
	m := gossip.NodeMeta{Role: a.cfg.Role, API: a.clusterAPIAddr(), Version: a.opts.Version}
	if rev, ok := a.appliedRevision(); ok {
		m.Seq, m.Rev = rev.Seq, rev.ID
	}
	m.Ready = a.Health().Status != api.StatusFail
	m.Drained = a.isDrained()
	m.CertExpiry = a.certExpiry()
	a.mu.Lock()
	m.Maint, m.MaintOn = a.maintApplied, a.maintActive
	if !a.behindSince.IsZero() {
		m.Behind = a.behindSince.Unix()
	}
	a.mu.Unlock()
	return m
}

// appliedRevision is the revision this node serves: the applied release on
// a web node, the cluster target on the controller.
func (a *Agent) appliedRevision() (mirror.Revision, bool) {
	if a.rels != nil {
		return a.rels.Current()
	}
	if t := a.currentTarget(); t != nil {
		return mirror.Revision{Seq: t.Seq, ID: t.ID}, true
	}
	return mirror.Revision{}, false
}

func (a *Agent) currentTargetID() string {
	if t := a.currentTarget(); t != nil {
		return t.ID
	}
	return ""
}

func (a *Agent) currentTarget() *api.RevRef {
	if a.gossip == nil {
		return nil
	}
	reg, ok := a.gossip.Get(targetKey)
	if !ok {
		return nil
	}
	var t api.RevRef
	if err := json.Unmarshal(reg.Value, &t); err != nil || t.ID == "" {
		a.log.Warn("ignoring malformed cluster target", "err", err)
		return nil
	}
	return &t
}

// initTarget makes the controller's latest revision the cluster target when
// the cluster has none yet, and pins the current target against GC.
func (a *Agent) initTarget() error {
	if t := a.currentTarget(); t != nil {
		if _, err := a.store.Find(t.ID); err != nil {
			a.log.Warn("cluster target is not in this controller's store", "seq", t.Seq, "id", t.ID)
		}
		a.store.Pin(t.ID)
		return nil
	}
	if rev, ok := a.store.Latest(); ok {
		return a.setTarget(rev)
	}
	return nil
}

func (a *Agent) setTarget(rev mirror.Revision) error {
	a.store.Pin(rev.ID)
	if _, err := a.gossip.Set(targetKey, api.RevRef{Seq: rev.Seq, ID: rev.ID}); err != nil {
		return fmt.Errorf("announce target %d: %w", rev.Seq, err)
	}
	a.log.Info("cluster target", "seq", rev.Seq, "id", rev.ID)
	a.announce()
	return nil
}

// Publish implements api.Node.
func (a *Agent) Publish(ctx context.Context, message string) (mirror.Revision, bool, error) {
	if a.store == nil {
		return mirror.Revision{}, false, api.ErrNotController
	}
	start := time.Now()
	rev, created, err := a.store.Publish(ctx, message)
	a.metrics.published(created, time.Since(start), err)
	if err != nil {
		return rev, false, err
	}
	if t := a.currentTarget(); t == nil || t.ID != rev.ID {
		if err := a.setTarget(rev); err != nil {
			return rev, created, err
		}
	}
	a.log.Info("published", "seq", rev.Seq, "id", rev.ID, "files", rev.Files, "changed", rev.Changed, "created", created)
	return rev, created, nil
}

// watch follows gossip: on a web node it hands every new target to the
// syncer and tracks the lag.
func (a *Agent) watch() {
	defer a.wg.Done()
	ch, cancel := a.gossip.Changes()
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		a.observe()
		a.publishMeta()
		select {
		case <-a.ctx.Done():
			return
		case <-ch:
		case <-a.poke:
		case <-tick.C:
		}
	}
}

// announce asks the watch loop to re-advertise this node's metadata. It never
// blocks: gossip's metadata update waits for a broadcast round, which must
// not delay an API answer.
func (a *Agent) announce() {
	select {
	case a.poke <- struct{}{}:
	default:
	}
}

// publishMeta advertises the metadata when it changed since the last time.
func (a *Agent) publishMeta() {
	m := a.localMeta()
	if m == a.lastMeta || a.metaFrozen.Load() {
		return
	}
	if err := a.gossip.SetMeta(m); err != nil {
		a.log.Warn("advertise node metadata", "err", err)
		return
	}
	a.lastMeta = m
}

func (a *Agent) observe() {
	a.applyMaintenance()
	a.observeEdge()
	t := a.currentTarget()
	a.mu.Lock()
	changed := t != nil && (a.target == nil || *a.target != *t)
	a.target = t
	a.mu.Unlock()
	if a.syncer == nil {
		return
	}
	if changed {
		a.syncer.SetTarget(mirror.Revision{Seq: t.Seq, ID: t.ID})
	}
	a.trackLag()
}

// trackLag records when this web node started to be behind the target.
func (a *Agent) trackLag() {
	applied, ok := a.rels.Current()
	a.mu.Lock()
	behind := a.target != nil && (!ok || applied.ID != a.target.ID)
	was := !a.behindSince.IsZero()
	switch {
	case !behind:
		a.behindSince = time.Time{}
	case !was:
		a.behindSince = time.Now()
	}
	a.mu.Unlock()
	if was != behind {
		a.announce()
	}
}

// applied is the syncer's callback after a switch.
func (a *Agent) applied(rev mirror.Revision) {
	// A sync grows the heap with the manifest and fetch buffers; give it
	// back now rather than when the scavenger gets to it, so an idle web
	// agent stays small.
	debug.FreeOSMemory()
	a.metrics.switches.Inc()
	a.trackLag()
	a.announce()
}

// source finds the controller's mirror endpoint through gossip (waiting
// for it after a start, see liveControllerAPI).
func (a *Agent) source(ctx context.Context) (mirror.Source, error) {
	api, err := a.liveControllerAPI(ctx)
	if err != nil {
		return nil, err
	}
	return mirror.NewClient("https://"+api+"/cluster/v1/mirror", a.peers), nil
}

// Rollback implements api.Node: make a kept revision the cluster target
// (controller only; web nodes then switch from their kept releases).
func (a *Agent) Rollback(ref string) (api.RevRef, error) {
	if a.store == nil {
		return api.RevRef{}, api.Conflict("rollback runs on the controller; this node is a web node")
	}
	rev, err := a.store.Find(ref)
	if errors.Is(err, mirror.ErrNotFound) {
		return api.RevRef{}, api.NotFound(fmt.Sprintf("no kept revision %q", ref))
	}
	if errors.Is(err, mirror.ErrAmbiguous) {
		return api.RevRef{}, api.BadRequest(fmt.Sprintf("revision %q is ambiguous: give more of the id", ref))
	}
	if err != nil {
		return api.RevRef{}, err
	}
	// Pin before announcing, then check the revision survived a GC that may
	// have run between Find and Pin.
	a.store.Pin(rev.ID)
	if _, err := a.store.Find(rev.ID); err != nil {
		a.store.Pin(a.currentTargetID())
		return api.RevRef{}, api.NotFound(fmt.Sprintf("revision %q was just garbage-collected", ref))
	}
	if err := a.setTarget(rev); err != nil {
		return api.RevRef{}, err
	}
	a.log.Info("rollback", "seq", rev.Seq, "id", rev.ID)
	return api.RevRef{Seq: rev.Seq, ID: rev.ID}, nil
}

package agent

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/mirror"
)

// peering is a web node's part in peer-assisted distribution: the handler
// that serves its content to the other agents (within
// mirror.peer_upload), and the swarm that remembers where its own syncs
// get content from.
type peering struct {
	server *mirror.PeerServer
	swarm  *mirror.Swarm
}

// openPeers prepares peering for the web node's releases (no I/O).
func (w *web) openPeers() {
	pu, a := w.a.cfg.Mirror.PeerUpload, w.a
	w.peering.server = mirror.NewPeerServer(w.rels,
		mirror.PeerUpload{Rate: int64(pu.Rate), Concurrency: pu.Concurrency}, a.log)
	w.peering.swarm = mirror.NewSwarm(a.log)
}

// contentSource is the syncer's Source: the controller and the peers
// together. It works without a live controller while peers hold the
// revision. A node that knows of neither yet (it is still joining) waits
// for one up to sourceWait.
func (w *web) contentSource(ctx context.Context) (mirror.Source, error) {
	a := w.a
	name, api, err := a.awaitSource(ctx, sourceWait)
	if err != nil {
		return nil, err
	}
	cfg := mirror.SourcesConfig{Self: a.cfg.Node, Peers: a.contentPeers, Swarm: w.peering.swarm, Logger: a.log}
	if api != "" {
		cfg.Controller = mirror.NewClient("https://"+api+"/cluster/v1/mirror", a.peers)
		cfg.ControllerName = name
	}
	return mirror.NewSources(cfg), nil
}

// sourceWait bounds how long a sync attempt waits for a source to appear
// in gossip.
const sourceWait = 10 * time.Second

// awaitSource returns the live controller (name and API; "" if none) once
// there is one or a peer holds the cluster target, waiting up to limit.
func (a *Agent) awaitSource(ctx context.Context, limit time.Duration) (name, api string, err error) {
	ch, cancel := a.gossip.Changes()
	defer cancel()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		if name, api = a.liveController(); api != "" || a.targetHeldByPeer() {
			return name, api, nil
		}
		select {
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-timer.C:
			return "", "", errors.New("no live controller and no peer holding the target in the cluster")
		case <-ch:
		}
	}
}

// liveController returns the name and cluster API of a live controller, if
// gossip knows one.
func (a *Agent) liveController() (name, api string) {
	for _, m := range a.gossip.Members() {
		if m.Meta.Role == config.RoleController && m.State == gossip.StateAlive && m.Meta.API != "" {
			return m.Name, m.Meta.API
		}
	}
	return "", ""
}

// targetHeldByPeer reports whether a peer holds content of the cluster
// target.
func (a *Agent) targetHeldByPeer() bool {
	t := a.currentTarget()
	return t != nil && len(a.contentPeers(t.ID)) > 0
}

// contentPeers lists the live web nodes that hold content of revision id:
// those that serve it (all of it) and those that are behind, syncing the
// target (what they stored so far: they say what through GET /have).
func (a *Agent) contentPeers(id string) []mirror.Peer {
	var out []mirror.Peer
	for _, m := range a.gossip.Members() {
		if m.Name == a.cfg.Node || m.State != gossip.StateAlive || m.Meta.Role != config.RoleWeb || m.Meta.API == "" {
			continue
		}
		complete := m.Meta.Rev == id
		if !complete && m.Meta.Behind == 0 {
			continue
		}
		out = append(out, mirror.Peer{Name: m.Name, Complete: complete,
			Client: mirror.NewClient("https://"+m.Meta.API+"/cluster/v1/mirror", a.peers)})
	}
	return out
}

// peerStatus adds to /v1/status where the content of the current (or
// last) sync came from, and what this node sent to its peers.
func (w *web) peerStatus(st *api.Status) {
	if rep := w.peering.swarm.Report(); st.Sync != nil && rep.Revision != "" && rep.Revision == st.Sync.Revision.ID {
		st.Sync.Sources = rep.Sources
	}
	pu := w.a.cfg.Mirror.PeerUpload
	st.PeerUpload = &api.PeerUpload{PeerUploadStats: w.peering.server.Stats(), Rate: int64(pu.Rate), Concurrency: pu.Concurrency}
}

// peerCollector exposes peer-assisted distribution to Prometheus.
type peerCollector struct{ a *Agent }

var (
	descPeerUploadBytes = prometheus.NewDesc("nodeagent_peer_upload_bytes_total",
		"Bytes of content and manifests this web node sent to peers.", nil, nil)
	descPeerUploadRequests = prometheus.NewDesc("nodeagent_peer_upload_requests_total",
		"Peer requests for content and manifests this web node served.", nil, nil)
	descPeerUploadRefused = prometheus.NewDesc("nodeagent_peer_upload_refused_total",
		"Peer requests refused as busy (mirror.peer_upload.concurrency reached for too long).", nil, nil)
	descPeerUploadAltered = prometheus.NewDesc("nodeagent_peer_upload_altered_total",
		"Release files found altered on disk while being sent to a peer (not sent).", nil, nil)
	descPeerUploadActive = prometheus.NewDesc("nodeagent_peer_upload_active",
		"Peer requests being served now.", nil, nil)
	descSyncSourceBytes = prometheus.NewDesc("nodeagent_sync_source_bytes_total",
		"Bytes of content and manifests this web node received, by kind of source (controller, peer).", []string{"kind"}, nil)
)

// Describe implements prometheus.Collector.
func (peerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPeerUploadBytes, descPeerUploadRequests, descPeerUploadRefused,
		descPeerUploadAltered, descPeerUploadActive, descSyncSourceBytes} {
		ch <- d
	}
}

// Collect implements prometheus.Collector; a controller has no series.
func (c peerCollector) Collect(ch chan<- prometheus.Metric) {
	w, ok := c.a.role.(*web)
	if !ok || w.peering.server == nil {
		return
	}
	p := w.peering
	st := p.server.Stats()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descPeerUploadBytes, st.Bytes)
	counter(descPeerUploadRequests, st.Requests)
	counter(descPeerUploadRefused, st.Refused)
	counter(descPeerUploadAltered, st.Altered)
	ch <- prometheus.MustNewConstMetric(descPeerUploadActive, prometheus.GaugeValue, float64(st.Active))
	for kind, n := range p.swarm.Totals() {
		counter(descSyncSourceBytes, n, kind)
	}
}

package agent

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/dump"
	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/mirror"
)

// metrics is the agent's Prometheus registry: state read at scrape time by
// stateCollector, and counters and histograms updated at events. It is the
// agent's own registry, never the global default one, so several agents in
// one process (tests, `nodeagent dev`) each expose their own.
type metrics struct {
	reg *prometheus.Registry

	syncDuration    prometheus.Histogram
	syncErrors      prometheus.Counter
	switches        prometheus.Counter
	publishDuration *prometheus.HistogramVec
	httpRequests    *prometheus.CounterVec
	httpDuration    *prometheus.HistogramVec
}

// syncBuckets span a one-file change (milliseconds) to a first copy of a
// large tree over a slow link (minutes).
var syncBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

func newMetrics(a *Agent) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "nodeagent_sync_duration_seconds",
			Help:    "Time of the syncs that switched mirror.target to a new release (fetch, build, durable, switch, after_switch).",
			Buckets: syncBuckets,
		}),
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nodeagent_sync_errors_total",
			Help: "Sync attempts that failed before the switch (fetch, verification, build), or whose after_switch failed.",
		}),
		switches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nodeagent_switches_total",
			Help: "Switches of mirror.target to another release (syncs and rollbacks).",
		}),
		publishDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nodeagent_publish_duration_seconds",
			Help:    "Time of publishes on the controller, by result: created, unchanged, error.",
			Buckets: syncBuckets,
		}, []string{"result"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nodeagent_http_requests_total",
			Help: "HTTP requests answered by the API, by API (local, cluster), method, route template and status code.",
		}, []string{"api", "method", "route", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nodeagent_http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by API and route template.",
			Buckets: prometheus.DefBuckets,
		}, []string{"api", "route"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		stateCollector{a},
		hookCollector{a},
		peerCollector{a},
		integrityCollector{a},
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "nodeagent_sync_received_bytes_total",
			Help: "Bytes received from other agents (manifests and content) as they crossed the network.",
		}, func() float64 { return float64(a.wire.rx.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "nodeagent_sync_sent_bytes_total",
			Help: "Bytes sent to other agents by this node's own calls (requests), as they crossed the network.",
		}, func() float64 { return float64(a.wire.tx.Load()) }),
		m.syncDuration, m.syncErrors, m.switches, m.publishDuration, m.httpRequests, m.httpDuration,
	)
	return m
}

// handler serves the registry in the Prometheus text (or OpenMetrics)
// format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// syncAttempt is the syncer's OnAttempt callback.
func (m *metrics) syncAttempt(_ mirror.Revision, took time.Duration, err error) {
	if err == nil || errors.Is(err, mirror.ErrAfterSwitch) {
		m.syncDuration.Observe(took.Seconds())
	}
	if err != nil {
		m.syncErrors.Inc()
	}
}

func (m *metrics) published(created bool, took time.Duration, err error) {
	result := "unchanged"
	switch {
	case err != nil:
		result = "error"
	case created:
		result = "created"
	}
	m.publishDuration.WithLabelValues(result).Observe(took.Seconds())
}

// observeRequest is the API's request hook. route is the registered path
// template, so the label set stays bounded whatever URLs clients send.
func (m *metrics) observeRequest(api, method, route string, code int, took time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	m.httpRequests.WithLabelValues(api, method, route, strconv.Itoa(code)).Inc()
	m.httpDuration.WithLabelValues(api, route).Observe(took.Seconds())
}

// Hooks for the metrics of components added by other issues. The agent
// satisfies each once it has the component; until then the series are
// absent (not zero, which would look like a real value).
type (
	// certificateExpiries: edge TLS. The not_after of each certificate
	// the edge serves, by its first name.
	certificateExpiries interface {
		CertificateNotAfter() map[string]time.Time
	}
	// dumpStats: SQL dumps on the controller; ok is false on a node that
	// takes none, whose series are then absent.
	dumpStats interface {
		DumpStats() (s dump.Stats, ok bool)
	}
)

// stateCollector reads the agent's state at scrape time.
type stateCollector struct{ a *Agent }

var (
	descInfo = prometheus.NewDesc("nodeagent_info",
		"Constant 1, labelled with this agent's node name, role and version.", []string{"node", "role", "version"}, nil)
	descAppliedSeq = prometheus.NewDesc("nodeagent_revision_applied_seq",
		"Seq of the revision this node serves (web: applied release; controller: the cluster target).", nil, nil)
	descAppliedInfo = prometheus.NewDesc("nodeagent_revision_applied_info",
		"Constant 1, labelled with the id and seq of the revision this node serves.", []string{"id", "seq"}, nil)
	descTargetSeq = prometheus.NewDesc("nodeagent_revision_target_seq",
		"Seq of the cluster target revision as this node sees it.", nil, nil)
	descTargetInfo = prometheus.NewDesc("nodeagent_revision_target_info",
		"Constant 1, labelled with the id and seq of the cluster target revision.", []string{"id", "seq"}, nil)
	descInSync = prometheus.NewDesc("nodeagent_revision_in_sync",
		"1 when this node serves the cluster target, else 0.", nil, nil)
	descLag = prometheus.NewDesc("nodeagent_revision_lag_seconds",
		"How long this web node has been behind the cluster target (0 when in sync).", nil, nil)
	descMembers = prometheus.NewDesc("nodeagent_gossip_members",
		"Members this node sees in gossip, by state (alive, suspect, dead, left); this node included.", []string{"state"}, nil)
	descMaintenance = prometheus.NewDesc("nodeagent_maintenance_active",
		"1 while cluster-wide maintenance is in force, else 0.", nil, nil)
	descDrained = prometheus.NewDesc("nodeagent_drained",
		"1 while this node is drained (out of the load balancer), else 0.", nil, nil)
	descReady = prometheus.NewDesc("nodeagent_ready",
		"1 when /readyz answers 200 (pass or warn), else 0.", nil, nil)
	descCertNotAfter = prometheus.NewDesc("nodeagent_certificate_not_after_seconds",
		"Expiry (Unix time) of each certificate the edge serves.", []string{"name"}, nil)
	descDumpLastSuccess = prometheus.NewDesc("nodeagent_db_dump_last_success_timestamp_seconds",
		"When the last good database dump finished (Unix time; 0 if none yet).", nil, nil)
	descDumpFailures = prometheus.NewDesc("nodeagent_db_dump_failures_total",
		"Database dumps that failed since the agent started.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInfo, descAppliedSeq, descAppliedInfo, descTargetSeq, descTargetInfo,
		descInSync, descLag, descMembers, descMaintenance, descDrained, descReady} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descInfo, 1, a.cfg.Node, a.cfg.Role, a.opts.Version)
	rs := a.revisionStatus()
	if rs.Applied != nil {
		gauge(descAppliedSeq, float64(rs.Applied.Seq))
		gauge(descAppliedInfo, 1, rs.Applied.ID, strconv.FormatUint(rs.Applied.Seq, 10))
	}
	if rs.Target != nil {
		gauge(descTargetSeq, float64(rs.Target.Seq))
		gauge(descTargetInfo, 1, rs.Target.ID, strconv.FormatUint(rs.Target.Seq, 10))
	}
	gauge(descInSync, boolValue(rs.InSync))
	gauge(descLag, rs.LagSeconds)
	for state, n := range memberStates(a.gossip.Members()) {
		gauge(descMembers, float64(n), state)
	}
	gauge(descMaintenance, boolValue(a.maintenanceState().Active))
	gauge(descDrained, boolValue(a.isDrained()))
	gauge(descReady, boolValue(a.Health().Status != api.StatusFail))
}

// hookCollector reads the optional hooks of src (the agent) at scrape time.
// It is unchecked (it describes nothing): which series exist depends on
// the components present.
type hookCollector struct{ src any }

// Describe implements prometheus.Collector.
func (hookCollector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c hookCollector) Collect(ch chan<- prometheus.Metric) {
	if h, ok := c.src.(certificateExpiries); ok {
		for name, t := range h.CertificateNotAfter() {
			ch <- prometheus.MustNewConstMetric(descCertNotAfter, prometheus.GaugeValue, unixSeconds(t), name)
		}
	}
	if h, ok := c.src.(dumpStats); ok {
		if st, ok := h.DumpStats(); ok {
			ch <- prometheus.MustNewConstMetric(descDumpLastSuccess, prometheus.GaugeValue, unixSeconds(st.LastSuccess))
			ch <- prometheus.MustNewConstMetric(descDumpFailures, prometheus.CounterValue, float64(st.Failures))
		}
	}
}

// memberStates counts members by state; every state is present, so a
// dashboard sees 0 rather than a missing series.
func memberStates(ms []gossip.Member) map[string]int {
	n := map[string]int{gossip.StateAlive: 0, gossip.StateSuspect: 0, gossip.StateDead: 0, gossip.StateLeft: 0}
	for _, m := range ms {
		n[m.State]++
	}
	return n
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/mirror"
)

// The integrity audit of a web node's served release (mirror.Auditor):
// started after the mirror, reported by the readiness check
// mirror:integrity (warn, never fail: a difference does not take the node
// out of the load balancer), /v1/status, metrics and log lines; POST
// /v1/verify runs a whole check, and a repair, on demand.

// openAudit starts the audit on a web node.
func (a *Agent) openAudit(ctx context.Context) error {
	if a.rels == nil {
		return nil
	}
	ac := a.cfg.Mirror.Audit
	a.audit = mirror.NewAuditor(mirror.AuditConfig{
		Releases: a.rels, CheckInterval: ac.CheckInterval.Std(), HashPeriod: ac.HashPeriod.Std(),
		Repair: ac.Repair, Source: a.source, Logger: a.log,
	})
	if err := a.audit.Open(ctx); err != nil {
		return fmt.Errorf("integrity audit: %w", err)
	}
	return nil
}

func (a *Agent) closeAudit() {
	if a.audit != nil {
		a.keep(a.audit.Close())
	}
}

// integrityService is what serves POST /v1/verify (nil on a controller).
func (a *Agent) integrityService() api.IntegrityService {
	if a.audit == nil {
		return nil
	}
	return a.audit
}

// integrityStatus is the integrity section of /v1/status (web nodes).
func (a *Agent) integrityStatus() *mirror.AuditStatus {
	if a.audit == nil {
		return nil
	}
	st := a.audit.Status()
	return &st
}

// integrityChecks adds mirror:integrity to the readiness checks of a web
// node: warn while the served release differs from its manifest.
func (a *Agent) integrityChecks(checks map[string][]api.Check) {
	if a.audit == nil {
		return
	}
	st := a.audit.Status()
	c := api.Check{Status: api.StatusPass, Time: time.Now(), ObservedValue: st.Count}
	switch {
	case !st.Enabled:
		c.Output = "audit off (mirror.audit)"
	case st.Count > 0:
		c.Status = api.StatusWarn
		c.Output = fmt.Sprintf("the served release (seq %d) differs from its manifest in %d places: %s; see nodeagent verify",
			st.Seq, st.Count, firstDifferences(st.Differences, 3))
	case st.Error != "":
		c.Status = api.StatusWarn
		c.Output = "audit failed: " + st.Error
	}
	checks["mirror:integrity"] = []api.Check{c}
}

func firstDifferences(diffs []mirror.Difference, n int) string {
	parts := make([]string, 0, n+1)
	for _, d := range diffs[:min(n, len(diffs))] {
		parts = append(parts, d.Kind+" "+d.Path)
	}
	if len(diffs) > n {
		parts = append(parts, "…")
	}
	return strings.Join(parts, ", ")
}

var (
	descIntegrityDifferences = prometheus.NewDesc("nodeagent_integrity_differences",
		"Differences between the served release and its manifest found by the last audit, by kind (tampered, missing, extra, type, mode, owner).",
		[]string{"kind"}, nil)
	descIntegrityChecked = prometheus.NewDesc("nodeagent_integrity_checked_timestamp_seconds",
		"When the served release was last checked whole (Unix time), by check: identity (every entry, no content read) or content (every file's SHA-256).",
		[]string{"check"}, nil)
	descIntegrityRepaired = prometheus.NewDesc("nodeagent_integrity_repaired_total",
		"Differences repaired (by the audit or nodeagent verify -repair) since the agent started.", nil, nil)
)

// integrityCollector reads the audit's status at scrape time (web nodes).
type integrityCollector struct{ a *Agent }

// Describe implements prometheus.Collector.
func (integrityCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descIntegrityDifferences
	ch <- descIntegrityChecked
	ch <- descIntegrityRepaired
}

// Collect implements prometheus.Collector.
func (c integrityCollector) Collect(ch chan<- prometheus.Metric) {
	if c.a.audit == nil {
		return
	}
	st := c.a.audit.Status()
	for _, k := range mirror.Kinds {
		ch <- prometheus.MustNewConstMetric(descIntegrityDifferences, prometheus.GaugeValue, float64(st.Kinds[k]), k)
	}
	ch <- prometheus.MustNewConstMetric(descIntegrityChecked, prometheus.GaugeValue, unixSeconds(st.CheckedAt), "identity")
	ch <- prometheus.MustNewConstMetric(descIntegrityChecked, prometheus.GaugeValue, unixSeconds(st.HashedAt), "content")
	ch <- prometheus.MustNewConstMetric(descIntegrityRepaired, prometheus.CounterValue, float64(st.Repaired))
}

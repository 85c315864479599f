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
// started after the releases, reported by the readiness check
// mirror:integrity (warn, never fail: a difference does not take the node
// out of the load balancer), /v1/status, metrics and log lines; POST
// /v1/verify runs a whole check, and a repair, on demand.

// openAudit starts the audit of the web role's releases.
func (w *web) openAudit(ctx context.Context) error {
	ac := w.a.cfg.Mirror.Audit
	w.audit = mirror.NewAuditor(mirror.AuditConfig{
		Releases: w.rels, CheckInterval: ac.CheckInterval.Std(), HashPeriod: ac.HashPeriod.Std(),
		Repair: ac.Repair, Source: w.contentSource, Logger: w.a.log,
	})
	if err := w.audit.Open(ctx); err != nil {
		return fmt.Errorf("integrity audit: %w", err)
	}
	return nil
}

func (w *web) closeAudit() error {
	if w.audit == nil {
		return nil
	}
	return w.audit.Close()
}

// integrity adds the audit to the API: POST /v1/verify.
func (w *web) integrity(cfg *api.Config) {
	if w.audit != nil {
		cfg.Integrity = w.audit
	}
}

// integrityStatus is the integrity section of /v1/status.
func (w *web) integrityStatus(st *api.Status) {
	if w.audit != nil {
		ist := w.audit.Status()
		st.Integrity = &ist
	}
}

// integrityChecks adds mirror:integrity to the readiness checks: warn
// while the served release differs from its manifest.
func (w *web) integrityChecks(checks map[string][]api.Check) {
	if w.audit == nil {
		return
	}
	st := w.audit.Status()
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

// audit returns the web role's auditor, nil on a controller or before
// Open.
func (c integrityCollector) audit() *mirror.Auditor {
	if w, ok := c.a.role.(*web); ok {
		return w.audit
	}
	return nil
}

// Describe implements prometheus.Collector.
func (integrityCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descIntegrityDifferences
	ch <- descIntegrityChecked
	ch <- descIntegrityRepaired
}

// Collect implements prometheus.Collector.
func (c integrityCollector) Collect(ch chan<- prometheus.Metric) {
	audit := c.audit()
	if audit == nil {
		return
	}
	st := audit.Status()
	for _, k := range mirror.Kinds {
		ch <- prometheus.MustNewConstMetric(descIntegrityDifferences, prometheus.GaugeValue, float64(st.Kinds[k]), k)
	}
	ch <- prometheus.MustNewConstMetric(descIntegrityChecked, prometheus.GaugeValue, unixSeconds(st.CheckedAt), "identity")
	ch <- prometheus.MustNewConstMetric(descIntegrityChecked, prometheus.GaugeValue, unixSeconds(st.HashedAt), "content")
	ch <- prometheus.MustNewConstMetric(descIntegrityRepaired, prometheus.CounterValue, float64(st.Repaired))
}

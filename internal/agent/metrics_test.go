package agent_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nodeagent/nodeagent/internal/agent"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// scrape reads GET /metrics of a's local API, without a token.
func scrape(t *testing.T, a *agent.Agent) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + a.LocalAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// series returns the value of the series of name whose labels include
// want, and whether it exists. Histograms give their sample count.
func series(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

type want struct {
	name   string
	labels map[string]string
	value  float64
}

func checkSeries(t *testing.T, node string, fams map[string]*dto.MetricFamily, wants []want) {
	t.Helper()
	for _, w := range wants {
		got, ok := series(fams, w.name, w.labels)
		switch {
		case !ok:
			t.Errorf("%s: no series %s%v", node, w.name, w.labels)
		case got != w.value:
			t.Errorf("%s: %s%v = %v, want %v", node, w.name, w.labels, got, w.value)
		}
	}
}

func TestMetricsAfterPublishAndSync(t *testing.T) {
	c := newCluster(t)
	web := c.addWeb("web-1")
	ctx := context.Background()
	if _, _, err := c.ctl.Publish(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	c.converged("web-1")
	writeTree(t, c.source, map[string]string{"lib/a.php": "a, changed"})
	rev2, _, err := c.ctl.Publish(ctx, "two")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ctl.Publish(ctx, "nothing new"); err != nil {
		t.Fatal(err)
	}
	c.converged("web-1")
	if code, _, body := call(t, "PUT", "http://"+web.LocalAddr()+"/v1/drain", testToken, nil); code != 200 {
		t.Fatalf("drain: %d %s", code, body)
	}
	if code, _, body := call(t, "PUT", "http://"+web.LocalAddr()+"/v1/maintenance", testToken,
		map[string]any{"enabled": true}); code != 200 {
		t.Fatalf("maintenance: %d %s", code, body)
	}
	// Requests whose raw URLs must not become label values.
	call(t, "GET", "http://"+web.LocalAddr()+"/v1/deploys/some-id", testToken, nil)
	call(t, "GET", "http://"+web.LocalAddr()+"/v1/no/such/route", testToken, nil)
	call(t, "GET", "http://"+web.LocalAddr()+"/v1/status", "wrong-token", nil)

	seq2 := map[string]string{"id": rev2.ID, "seq": "2"}
	fams := scrape(t, web)
	checkSeries(t, "web-1", fams, []want{
		{"nodeagent_info", map[string]string{"node": "web-1", "role": "web"}, 1},
		{"nodeagent_revision_applied_seq", nil, 2},
		{"nodeagent_revision_applied_info", seq2, 1},
		{"nodeagent_revision_target_seq", nil, 2},
		{"nodeagent_revision_target_info", seq2, 1},
		{"nodeagent_revision_in_sync", nil, 1},
		{"nodeagent_revision_lag_seconds", nil, 0},
		{"nodeagent_switches_total", nil, 2},
		{"nodeagent_sync_duration_seconds", nil, 2},
		{"nodeagent_sync_errors_total", nil, 0},
		{"nodeagent_gossip_members", map[string]string{"state": "alive"}, 2},
		{"nodeagent_gossip_members", map[string]string{"state": "dead"}, 0},
		{"nodeagent_gossip_members", map[string]string{"state": "left"}, 0},
		{"nodeagent_maintenance_active", nil, 1},
		{"nodeagent_drained", nil, 1},
		{"nodeagent_ready", nil, 0},
		{"nodeagent_http_requests_total", map[string]string{"api": "local", "method": "PUT", "route": "/v1/drain", "code": "200"}, 1},
		{"nodeagent_http_requests_total", map[string]string{"api": "local", "method": "GET", "route": "/v1/deploys/:id", "code": "404"}, 1},
		{"nodeagent_http_requests_total", map[string]string{"api": "local", "method": "GET", "route": "unmatched", "code": "404"}, 1},
		{"nodeagent_http_requests_total", map[string]string{"api": "local", "method": "GET", "route": "/v1/status", "code": "401"}, 1},
	})
	if rx, _ := series(fams, "nodeagent_sync_received_bytes_total", nil); rx < 100 {
		t.Errorf("nodeagent_sync_received_bytes_total = %v, want the fetched manifests and content", rx)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "nodeagent_http_request_duration_seconds"} {
		if fams[name] == nil {
			t.Errorf("web-1: no %s", name)
		}
	}
	for _, m := range fams["nodeagent_http_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "route" && strings.Contains(l.GetValue(), "some-id") {
				t.Errorf("raw URL as a route label: %v", m)
			}
		}
	}
	// Hooks for certificates and dumps stay absent until those components exist.
	for _, name := range []string{"nodeagent_certificate_not_after_seconds", "nodeagent_db_dump_failures_total"} {
		if fams[name] != nil {
			t.Errorf("web-1: %s exported without its component", name)
		}
	}

	ctl := scrape(t, c.ctl)
	checkSeries(t, "controller", ctl, []want{
		{"nodeagent_info", map[string]string{"node": "controller", "role": "controller"}, 1},
		{"nodeagent_revision_target_info", seq2, 1},
		{"nodeagent_revision_applied_seq", nil, 2},
		{"nodeagent_publish_duration_seconds", map[string]string{"result": "created"}, 2},
		{"nodeagent_publish_duration_seconds", map[string]string{"result": "unchanged"}, 1},
		{"nodeagent_maintenance_active", nil, 1},
		{"nodeagent_drained", nil, 0},
	})
}

// TestMetricsOnlyOnLocalAPI: the cluster API faces the network and does
// not serve /metrics.
func TestMetricsOnlyOnLocalAPI(t *testing.T) {
	c := newCluster(t)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := hc.Get("https://" + c.ctl.ClusterAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("cluster API GET /metrics: %d, want 404", resp.StatusCode)
	}
}

// TestMetricsCountFailedSyncs: a web node cut off from the controller's
// content counts failed attempts, switches nothing, and shows its lag; once
// reconnected it switches once.
func TestMetricsCountFailedSyncs(t *testing.T) {
	c := newCluster(t)
	var cut atomic.Bool
	cut.Store(true)
	web := c.addCuttableWeb("web-1", &cut)
	c.publish("one")
	testutil.Eventually(t, 20*time.Second, func() error {
		fams := scrape(t, web)
		if n, _ := series(fams, "nodeagent_sync_errors_total", nil); n < 2 {
			return fmt.Errorf("nodeagent_sync_errors_total %v, want retries counted", n)
		}
		if lag, _ := series(fams, "nodeagent_revision_lag_seconds", nil); lag <= 0 {
			return fmt.Errorf("nodeagent_revision_lag_seconds %v while behind", lag)
		}
		return nil
	})
	fams := scrape(t, web)
	checkSeries(t, "web-1 cut off", fams, []want{
		{"nodeagent_switches_total", nil, 0},
		{"nodeagent_sync_duration_seconds", nil, 0},
		{"nodeagent_revision_in_sync", nil, 0},
		{"nodeagent_revision_target_seq", nil, 1},
		{"nodeagent_ready", nil, 0},
	})
	if _, ok := series(fams, "nodeagent_revision_applied_seq", nil); ok {
		t.Error("nodeagent_revision_applied_seq exported before any release")
	}
	cut.Store(false)
	c.converged("web-1")
	testutil.Eventually(t, 10*time.Second, func() error {
		fams := scrape(t, web)
		if n, _ := series(fams, "nodeagent_switches_total", nil); n != 1 {
			return fmt.Errorf("nodeagent_switches_total %v, want 1", n)
		}
		return nil
	})
	checkSeries(t, "web-1 reconnected", scrape(t, web), []want{
		{"nodeagent_sync_duration_seconds", nil, 1},
		{"nodeagent_revision_applied_seq", nil, 1},
		{"nodeagent_revision_in_sync", nil, 1},
		{"nodeagent_revision_lag_seconds", nil, 0},
	})
}

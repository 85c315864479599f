package agent

// An internal test: the hooks are satisfied by methods other issues add to
// *Agent, so a fake stands in for them here.

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nodeagent/nodeagent/internal/dump"
)

type fakeHooks struct{}

func (fakeHooks) CertificateNotAfter() map[string]time.Time {
	return map[string]time.Time{"moodle.example.com": time.Unix(1900000000, 0)}
}
func (fakeHooks) DumpStats() (dump.Stats, bool) {
	return dump.Stats{LastSuccess: time.Unix(1800000000, 500e6), Failures: 3}, true
}

// noDumps is a node without a db section.
type noDumps struct{}

func (noDumps) DumpStats() (dump.Stats, bool) { return dump.Stats{}, false }

func TestMetricsHooks(t *testing.T) {
	want := `
# HELP nodeagent_certificate_not_after_seconds Expiry (Unix time) of each certificate the edge serves.
# TYPE nodeagent_certificate_not_after_seconds gauge
nodeagent_certificate_not_after_seconds{name="moodle.example.com"} 1.9e+09
# HELP nodeagent_db_dump_failures_total Database dumps that failed since the agent started.
# TYPE nodeagent_db_dump_failures_total counter
nodeagent_db_dump_failures_total 3
# HELP nodeagent_db_dump_last_success_timestamp_seconds When the last good database dump finished (Unix time; 0 if none yet).
# TYPE nodeagent_db_dump_last_success_timestamp_seconds gauge
nodeagent_db_dump_last_success_timestamp_seconds 1.8000000005e+09
`
	if err := testutil.CollectAndCompare(hookCollector{fakeHooks{}}, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(hookCollector{struct{}{}}); n != 0 {
		t.Fatalf("without the hooks: %d series, want none", n)
	}
	if n := testutil.CollectAndCount(hookCollector{noDumps{}}); n != 0 {
		t.Fatalf("a node that takes no dumps: %d series, want none", n)
	}
}

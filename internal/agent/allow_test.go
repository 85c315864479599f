package agent_test

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// TestBadAllowRangeLocksNobodyOut: ranges that do not parse in the
// maintenance state or in a node's maintenance.allow, as another agent (an
// older or a broken one) may write them — the API refuses them — are left
// out alone at the edge: the valid ranges of the state and the cluster's
// maintenance.allow still let their clients reach Moodle.
func TestBadAllowRangeLocksNobodyOut(t *testing.T) {
	mc := newMoodleCluster(t, "10.0.0.0/8")
	mc.expect(t, publicClient, http.StatusOK, true, "moodle front page")

	if err := mc.ctl.SetRegister("maintenance",
		`{"enabled":true,"message":"Back soon","allow":["not a cidr","203.0.113.0/24","192.0.2.7/33"]}`); err != nil {
		t.Fatal(err)
	}
	mc.expect(t, publicClient, http.StatusServiceUnavailable, false, "Back soon")
	mc.expect(t, adminClient, http.StatusOK, true, "moodle front page")
	mc.expect(t, "203.0.113.9", http.StatusOK, true, "moodle front page")

	// web-1's own maintenance.allow, overwritten with a bad range.
	if err := mc.ctl.SetRegister("allow/web-1", `{"allow":["10.9.0.0/33"]}`); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		var m api.Maintenance
		getJSON(t, mc.web, "/v1/maintenance", &m)
		if !slices.Contains(m.ConfigAllow, "10.9.0.0/33") {
			return fmt.Errorf("web-1 does not see the bad range yet: %v", m.ConfigAllow)
		}
		return nil
	})
	mc.expect(t, adminClient, http.StatusOK, true, "moodle front page")
	mc.expect(t, publicClient, http.StatusServiceUnavailable, false, "Back soon")
}

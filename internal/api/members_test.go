package api_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/gossip"
)

// TestMembersJSON: GET /v1/members uses the documented snake_case names,
// RFC 3339 times and null for what a member does not report.
func TestMembersJSON(t *testing.T) {
	since := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	rev := strings.Repeat("ab", 32)
	node := &fakeNode{members: []gossip.Member{
		{Name: "controller", Addr: "10.0.0.4:7946", State: gossip.StateAlive, Since: since,
			Meta: gossip.NodeMeta{Role: "controller", API: "10.0.0.4:7947", Version: "1.2.0"}},
		{Name: "web-1", Addr: "10.0.0.5:7946", State: gossip.StateDead, Since: since,
			Meta: gossip.NodeMeta{Role: "web", API: "10.0.0.5:7947", Seq: 7, Rev: rev, Drained: true, Ready: true,
				Maint: 12, MaintOn: true, Behind: since.Unix(), Version: "1.2.0", CertExpiry: since.Add(time.Hour).Unix()}},
	}}
	resp, body := do(t, "GET", serve(t, node).URL+"/v1/members", token, "")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /v1/members: %d %s", resp.StatusCode, body)
	}
	var raw struct {
		Members []map[string]json.RawMessage `json:"members"`
	}
	if err := json.Unmarshal(body, &raw); err != nil || len(raw.Members) != 2 {
		t.Fatalf("body %s (%v)", body, err)
	}
	want := []string{"name", "address", "state", "since", "role", "api", "revision", "drained", "ready",
		"maintenance", "behind_since", "version", "certificate_not_after"}
	slices.Sort(want)
	for _, m := range raw.Members {
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, want) {
			t.Fatalf("member keys %v, want %v", keys, want)
		}
	}
	ctl, web := raw.Members[0], raw.Members[1]
	for k, v := range map[string]string{"revision": "null", "behind_since": "null", "certificate_not_after": "null"} {
		if string(ctl[k]) != v {
			t.Errorf("controller %s = %s, want %s", k, ctl[k], v)
		}
	}
	for k, v := range map[string]string{
		"name": `"web-1"`, "address": `"10.0.0.5:7946"`, "state": `"dead"`, "since": `"2026-12-04T10:00:00Z"`,
		"role": `"web"`, "api": `"10.0.0.5:7947"`, "revision": `{"seq":7,"id":"` + rev + `"}`, "drained": "true",
		"ready": "true", "maintenance": `{"clock":12,"active":true}`, "behind_since": `"2026-12-04T10:00:00Z"`,
		"version": `"1.2.0"`, "certificate_not_after": `"2026-12-04T11:00:00Z"`,
	} {
		if string(web[k]) != v {
			t.Errorf("web-1 %s = %s, want %s", k, web[k], v)
		}
	}
}

package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
)

// fakeView is an api.ClusterView whose answers the test sets.
type fakeView struct {
	reports api.NodeReports
	history api.History
	deploys []api.Deploy
	drain   func(name string, drained bool, auth string) error
}

func (f *fakeView) NodeReports(context.Context) api.NodeReports { return f.reports }
func (f *fakeView) History() api.History                        { return f.history }
func (f *fakeView) Deploys() []api.Deploy                       { return f.deploys }
func (f *fakeView) SetNodeDrain(_ context.Context, name string, drained bool, auth string) error {
	return f.drain(name, drained, auth)
}

var _ api.ClusterView = (*fakeView)(nil)

func viewServer(t *testing.T, v *fakeView) string {
	t.Helper()
	srv := httptest.NewServer(api.New(api.Config{Node: &fakeNode{}, Token: token, View: v}).LocalHandler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestNodeDrainForwardsTheCallersToken: PUT/DELETE /v1/nodes/{name}/drain
// hand the caller's Authorization to the view (which presents it to the
// member), and the member's refusal comes back as it was.
func TestNodeDrainForwardsTheCallersToken(t *testing.T) {
	type call struct {
		name    string
		drained bool
		auth    string
	}
	var calls []call
	v := &fakeView{drain: func(name string, drained bool, auth string) error {
		calls = append(calls, call{name, drained, auth})
		if name == "web-9" {
			return api.NewProblem(http.StatusForbidden, "web-9 answered: missing or wrong bearer token")
		}
		return nil
	}}
	base := viewServer(t, v)
	resp, body := do(t, "PUT", base+"/v1/nodes/web-2/drain", token, "")
	if resp.StatusCode != 200 || string(body) != `{"drained":true,"node":"web-2"}`+"\n" {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "DELETE", base+"/v1/nodes/web-2/drain", token, "")
	if resp.StatusCode != 200 || string(body) != `{"drained":false,"node":"web-2"}`+"\n" {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "PUT", base+"/v1/nodes/web-9/drain", token, "")
	var p api.Problem
	if resp.StatusCode != 403 || json.Unmarshal(body, &p) != nil || p.Detail != "web-9 answered: missing or wrong bearer token" {
		t.Fatalf("refused: %d %s", resp.StatusCode, body)
	}
	if resp, _ := do(t, "PUT", base+"/v1/nodes/web-2/drain", "", ""); resp.StatusCode != 401 {
		t.Fatalf("without a token: %d", resp.StatusCode)
	}
	want := []call{{"web-2", true, "Bearer " + token}, {"web-2", false, "Bearer " + token}, {"web-9", true, "Bearer " + token}}
	if len(calls) != len(want) {
		t.Fatalf("calls %+v, want %+v", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Errorf("call %d: %+v, want %+v", i, calls[i], want[i])
		}
	}
}

// TestViewEndpoints: /v1/nodes, /v1/history and /v1/deploys answer what
// the view holds; an empty deploy list is [] (not null).
func TestViewEndpoints(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	v := &fakeView{
		reports: api.NodeReports{Asked: now, Nodes: []api.NodeReport{{Name: "web-1", API: "10.0.0.5:7947", Error: "ask 10.0.0.5:7947: timeout"}}},
		history: api.History{Since: now, Syncs: []api.SyncRecord{{Node: "web-1", Seq: 3, Seconds: 2.5}}},
	}
	base := viewServer(t, v)
	for path, want := range map[string]string{
		"/v1/nodes":   `"error":"ask 10.0.0.5:7947: timeout"`,
		"/v1/history": `"syncs":[{"node":"web-1","seq":3`,
		"/v1/deploys": `{"deploys":[]}`,
	} {
		resp, body := do(t, "GET", base+path, token, "")
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d %s, want %s", path, resp.StatusCode, body, want)
		}
	}
	v.deploys = []api.Deploy{{ID: "d2", Status: api.DeployRunning}, {ID: "d1", Status: api.DeploySucceeded}}
	if _, body := do(t, "GET", base+"/v1/deploys", token, ""); !strings.Contains(string(body), `"id":"d2"`) || !strings.Contains(string(body), `"id":"d1"`) {
		t.Errorf("deploys: %s", body)
	}
}

package api_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/clustertls"
	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/mirror"
)

// fakeNode is an api.Node whose answers the test sets.
type fakeNode struct {
	api.Operations // not used by these tests
	health         api.Health
	members        []gossip.Member
	publish        func(ctx context.Context, msg string) (mirror.Revision, bool, error)
}

func (f *fakeNode) Status() api.Status          { return api.Status{Node: "n1", Role: "web"} }
func (f *fakeNode) Members() []gossip.Member    { return f.members }
func (f *fakeNode) Revisions() api.RevisionList { return api.RevisionList{} }
func (f *fakeNode) Health() api.Health          { return f.health }
func (f *fakeNode) PublishRevision(ctx context.Context, req api.PublishRequest) (api.PublishResponse, error) {
	rev, created, err := f.publish(ctx, req.Message)
	return api.PublishResponse{Revision: rev, Unchanged: !created}, err
}

var _ api.Node = (*fakeNode)(nil)

const token = "s3cret-token"

func serve(t *testing.T, node *fakeNode) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(api.New(api.Config{Node: node, Token: token}).LocalHandler())
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, method, url, tok, body string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, data
}

func TestReadyzStatusCodes(t *testing.T) {
	for _, tc := range []struct {
		status string
		code   int
	}{{api.StatusPass, 200}, {api.StatusWarn, 200}, {api.StatusFail, 503}} {
		node := &fakeNode{health: api.Health{Status: tc.status, Checks: map[string][]api.Check{
			"mirror:revision": {{Status: tc.status, Output: "x"}},
		}}}
		resp, body := do(t, "GET", serve(t, node).URL+"/readyz", "", "")
		if resp.StatusCode != tc.code || resp.Header.Get("Content-Type") != "application/health+json" {
			t.Fatalf("%s: %d %s", tc.status, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var h api.Health
		if err := json.Unmarshal(body, &h); err != nil || h.Status != tc.status || len(h.Checks["mirror:revision"]) != 1 {
			t.Fatalf("%s: body %s", tc.status, body)
		}
	}
}

func TestTokenAndProblems(t *testing.T) {
	calls := 0
	node := &fakeNode{publish: func(ctx context.Context, msg string) (mirror.Revision, bool, error) {
		calls++
		return mirror.Revision{Seq: 1, ID: "ab", Message: msg}, true, nil
	}}
	srv := serve(t, node)
	for _, tok := range []string{"", "wrong", token + "x"} {
		resp, body := do(t, "POST", srv.URL+"/v1/revisions", tok, `{"message":"m"}`)
		var p api.Problem
		if resp.StatusCode != 401 || resp.Header.Get("Content-Type") != "application/problem+json" ||
			json.Unmarshal(body, &p) != nil || p.Status != 401 || p.Detail == "" {
			t.Fatalf("token %q: %d %s", tok, resp.StatusCode, body)
		}
	}
	if calls != 0 {
		t.Fatal("publish ran without a valid token")
	}
	resp, body := do(t, "POST", srv.URL+"/v1/revisions", token, `{"message":`)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "malformed JSON") {
		t.Fatalf("malformed: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "POST", srv.URL+"/v1/revisions", token, `{"mesage":"typo"}`)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "mesage") {
		t.Fatalf("unknown field: %d %s", resp.StatusCode, body)
	}
	resp, _ = do(t, "POST", srv.URL+"/v1/revisions", token, `{"message":"`+strings.Repeat("x", 2<<20)+`"}`)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("2 MB body: %d", resp.StatusCode)
	}
	if calls != 0 {
		t.Fatal("publish ran on a bad request")
	}
	resp, body = do(t, "POST", srv.URL+"/v1/revisions", token, `{"message":"ok"}`)
	if resp.StatusCode != 201 || !strings.Contains(string(body), `"unchanged":false`) || calls != 1 {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "GET", srv.URL+"/v1/nothing", token, "")
	if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("unknown route: %d %s", resp.StatusCode, body)
	}
}

func TestClusterEndpointsNeedClusterCertificate(t *testing.T) {
	mirrorCalled := false
	srv := httptest.NewUnstartedServer(api.New(api.Config{
		Node: &fakeNode{}, Token: token,
		Mirror: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { mirrorCalled = true }),
	}).ClusterHandler())
	srv.StartTLS()
	t.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	// Even the admin token does not open agent endpoints.
	req, _ := http.NewRequest("GET", srv.URL+"/cluster/v1/mirror/revisions", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || mirrorCalled {
		t.Fatalf("agent endpoint without a client certificate: %d, handler called %v", resp.StatusCode, mirrorCalled)
	}
}

// TestClusterMeta: another agent reads this node's advertised metadata
// with its cluster certificate (a deploy barrier does, when gossip is slow).
func TestClusterMeta(t *testing.T) {
	key := make([]byte, 32)
	keys := []clustertls.Key{{Name: "k", Secret: key}}
	server, err := clustertls.New(clustertls.Config{Node: "web-1"}, keys)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := clustertls.New(clustertls.Config{Node: "controller"}, keys)
	if err != nil {
		t.Fatal(err)
	}
	want := gossip.NodeMeta{Role: "web", API: "10.0.0.5:7947", Seq: 7, Rev: strings.Repeat("ab", 32), Maint: 12, MaintOn: true}
	srv := httptest.NewUnstartedServer(api.New(api.Config{
		Node: &fakeNode{}, Token: token,
		Meta:       func() gossip.NodeMeta { return want },
		VerifyPeer: server.Verified,
	}).ClusterHandler())
	srv.TLS = server.ServerConfig()
	srv.StartTLS()
	t.Cleanup(srv.Close)

	host := strings.TrimPrefix(srv.URL, "https://")
	resp, err := peer.HTTPClient(nil).Get("https://" + host + "/cluster/v1/meta")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got gossip.NodeMeta
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 || got != want {
		t.Fatalf("GET /cluster/v1/meta = %d %+v (%v), want %+v", resp.StatusCode, got, err, want)
	}

	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err = anon.Get(srv.URL + "/cluster/v1/meta")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("GET /cluster/v1/meta without a cluster certificate = %d, want 401", resp.StatusCode)
	}
}

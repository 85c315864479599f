package ui_test

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/nodeagent/nodeagent/internal/clustertls"
)

// BenchmarkStatusPage measures what an open status page costs the agents
// of a 1+2 cluster, against GET /healthz on the same server (the HTTP
// round trip and middleware alone):
//
//   - refresh: the seven reads of one refresh, on the serving agent's
//     local API with the read token (its /v1/nodes answer is reused for
//     1 s, as when the page refreshes every second);
//
//   - report: what each member answers to GET /cluster/v1/report, asked
//     once a second by the serving agent (TLS with a cluster certificate,
//     like the anchor healthz-tls on the same cluster API).
//
//     go test -run '^$' -bench StatusPage -benchtime 2000x -count 3 ./internal/ui/
func BenchmarkStatusPage(b *testing.B) {
	c := newCluster(b, 2, 0)
	id, err := clustertls.New(clustertls.Config{Node: "bench"}, []clustertls.Key{{Name: "test", Secret: testKey}})
	if err != nil {
		b.Fatal(err)
	}
	peer := id.HTTPClient(nil)
	local := &http.Client{}
	var sess struct {
		ReadToken string `json:"read_token"`
	}
	get(b, local, "http://"+c.ctl.LocalAddr()+"/ui/session", "", &sess)
	base := "http://" + c.ctl.LocalAddr()
	refresh := []string{"/v1/status", "/v1/members", "/v1/nodes", "/v1/revisions", "/v1/maintenance", "/v1/deploys", "/v1/history"}
	b.Run("healthz", func(b *testing.B) {
		for b.Loop() {
			get(b, local, base+"/healthz", "", nil)
		}
	})
	b.Run("refresh", func(b *testing.B) {
		for b.Loop() {
			for _, p := range refresh {
				get(b, local, base+p, sess.ReadToken, nil)
			}
		}
	})
	cluster := "https://" + c.webs[0].ClusterAddr()
	b.Run("healthz-tls", func(b *testing.B) {
		for b.Loop() {
			get(b, peer, cluster+"/healthz", "", nil)
		}
	})
	b.Run("report", func(b *testing.B) {
		for b.Loop() {
			get(b, peer, cluster+"/cluster/v1/report", "", nil)
		}
	})
}

func get(b testing.TB, hc *http.Client, url, token string, v any) {
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			b.Fatal(err)
		}
		return
	}
	io.Copy(io.Discard, resp.Body)
}

package agent_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/agent"
	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

// BenchmarkScrape measures GET /metrics on a controller's local API (Go
// runtime, process and agent series, the HTTP series of earlier requests),
// with GET /healthz on the same server as the anchor: the cost of the HTTP
// round trip and middleware alone.
//
//	go test -run '^$' -bench Scrape -benchtime 2000x ./internal/agent/
func BenchmarkScrape(b *testing.B) {
	dir := b.TempDir()
	src := filepath.Join(dir, "source")
	if err := os.MkdirAll(src, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "index.php"), []byte("<?php"), 0o644); err != nil {
		b.Fatal(err)
	}
	cfg := config.Default()
	cfg.Node, cfg.Role, cfg.DataDir = "controller", config.RoleController, filepath.Join(dir, "data")
	cfg.Gossip.Bind, cfg.Cluster.Listen, cfg.API.Listen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Mirror.Source, cfg.Deploy.RunAs = src, testUser
	a := agent.New(cfg, agent.Options{Key: testKey, Token: testToken, GossipTiming: gossip.TestTiming()})
	if err := a.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close() })
	if _, _, err := a.Publish(context.Background(), "one"); err != nil {
		b.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	for _, path := range []string{"/healthz", "/metrics"} {
		b.Run(path[1:], func(b *testing.B) {
			var size int64
			for b.Loop() {
				resp, err := hc.Get("http://" + a.LocalAddr() + path)
				if err != nil {
					b.Fatal(err)
				}
				size, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("%s: %d", path, resp.StatusCode)
				}
			}
			b.ReportMetric(float64(size), "bytes/op")
		})
	}
}

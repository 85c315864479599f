package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/bench/internal/benchenv"
)

const (
	readyzTarget = time.Millisecond
	readyzSlice  = 2 * time.Second
)

// loadTarget is one URL under load and what it measured so far.
type loadTarget struct {
	name, url string
	hc        *http.Client
	pid       int // the serving process, for its CPU time
	samples   []sample
	elapsed   time.Duration
	cpu       time.Duration
}

// measure adds one open-loop slice of d at rate.
func (t *loadTarget) measure(ctx context.Context, rate int, d time.Duration) error {
	cpu0, err := benchenv.CPUTime(t.pid)
	if err != nil {
		return err
	}
	start := time.Now()
	t.samples = append(t.samples, openLoop(ctx, t.hc, t.url, rate, d)...)
	t.elapsed += time.Since(start)
	cpu1, err := benchenv.CPUTime(t.pid)
	if err != nil {
		return err
	}
	t.cpu += cpu1 - cpu0
	return ctx.Err()
}

// benchReadyz starts a controller and one web agent, waits until the web
// agent is ready, then loads its /readyz on the local and the cluster API.
func benchReadyz(ctx context.Context, o options, root string, log io.Writer) (string, error) {
	c, err := newCluster(o.bin, filepath.Join(root, "readyz"))
	if err != nil {
		return "", err
	}
	defer c.stop()
	if err := writeTree(c.src, 50); err != nil {
		return "", fmt.Errorf("source tree: %w", err)
	}
	if _, err := c.start("controller", "controller"); err != nil {
		return "", err
	}
	if err := poll(ctx, 30*time.Second, 50*time.Millisecond, "controller API", func() error {
		_, err := c.cli(ctx, "publish", "-m", "readyz")
		return err
	}); err != nil {
		return "", err
	}
	web, err := c.start("web-1", "web")
	if err != nil {
		return "", err
	}
	local := "http://" + web.localAPI + "/readyz"
	lc := loadClient(nil)
	if err := poll(ctx, time.Minute, 50*time.Millisecond, "web-1 ready", func() error {
		resp, err := lc.Get(local)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %s", resp.Status)
		}
		return nil
	}); err != nil {
		return "", err
	}
	// A load balancer probe presents no client certificate and, like most,
	// does not verify the server's: the handshake is once per connection.
	tc := loadClient(&tls.Config{InsecureSkipVerify: true})
	anchor, err := startAnchor()
	if err != nil {
		return "", err
	}
	defer anchor.stop()
	targets := []loadTarget{
		{name: "/readyz, local API (HTTP)", url: local, hc: lc, pid: web.cmd.Process.Pid},
		{name: "/readyz, cluster API (TLS)", url: "https://" + web.clusterAPI + "/readyz", hc: tc, pid: web.cmd.Process.Pid},
		{name: "anchor: /healthz, local API (HTTP)", url: "http://" + web.localAPI + "/healthz", hc: lc, pid: web.cmd.Process.Pid},
		{name: "anchor: minimal net/http server", url: "http://" + anchor.addr + "/", hc: loadClient(nil), pid: anchor.cmd.Process.Pid},
	}
	// Warm up every connection pool, then measure in slices that rotate
	// over the targets, so a burst of load from elsewhere on the machine
	// lands on all of them alike.
	for _, t := range targets {
		openLoop(ctx, t.hc, t.url, o.rate, 2*time.Second)
	}
	rounds := max(int(o.duration/readyzSlice), 1)
	fmt.Fprintf(log, "readyz: %d targets at %d/s, %d slices of %s each\n", len(targets), o.rate, rounds, readyzSlice)
	for round := 0; round < rounds; round++ {
		for i := range targets {
			if err := targets[i].measure(ctx, o.rate, readyzSlice); err != nil {
				return "", err
			}
		}
	}
	var rows []loadResult
	for _, t := range targets {
		r := summarise(t.name, t.samples, t.elapsed)
		r.agentCPU = t.cpu
		fmt.Fprint(log, r.row())
		rows = append(rows, r)
	}
	var wrks []*wrkResult
	for _, t := range targets[:2] {
		w, err := runWrk(ctx, t.name, t.url, 10*time.Second)
		if err != nil {
			return "", err
		}
		if w != nil {
			wrks = append(wrks, w)
		}
	}
	return readyzMarkdown(o, rows) + wrkMarkdown(wrks), nil
}

// loadClient keeps enough idle connections for the requests in flight at
// once; HTTP/1.1, as load balancer probes use.
func loadClient(tc *tls.Config) *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     tc,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
	}
}

func readyzMarkdown(o options, rows []loadResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Open-loop GET /readyz of a ready web agent at %d requests/s for %s per target, in 2s slices rotating over the targets (after 2s of warm-up each), "+
		"keep-alive HTTP/1.1, one goroutine per request; latency counted from each request's scheduled start "+
		"(no coordinated omission), in ms; service is from the actual send. The load generator and the agent share the machine. "+
		"Anchors, same generator: the agent's /healthz (same HTTP stack, no checks) and a minimal Go net/http server process.\n\n", o.rate, o.duration)
	b.WriteString("| target | requests | 200 / other / errors | p50 | p99 | p99.9 | max | service p50 / p99 | sender late p50 / p99 | server CPU |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		b.WriteString(r.row())
	}
	b.WriteString("\n")
	for _, r := range rows {
		if strings.HasPrefix(r.name, "anchor") {
			continue
		}
		p99 := quantile(r.latency, 0.99)
		fmt.Fprintf(&b, "- %s: p99 %sms, target <= 1ms: **%s**", r.name, fmtMs(p99), met(p99 <= readyzTarget && r.ok == r.sent))
		if r.firstErr != nil {
			fmt.Fprintf(&b, " (first error: %v)", r.firstErr)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	return b.String()
}

func wrkMarkdown(rows []*wrkResult) string {
	if len(rows) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("Cross-check with `wrk -t1 -c1 -d10s --latency` (closed loop: one connection, the next request when the answer " +
		"arrives, so as fast as the agent answers rather than 500/s, and blind to queueing):\n\n")
	b.WriteString("| target | requests/s | p50 | p99 | max |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		b.WriteString(r.row())
	}
	b.WriteString("\n")
	return b.String()
}

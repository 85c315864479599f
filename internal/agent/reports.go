package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

// Bounds of GET /v1/nodes: each member gets reportTimeout to answer, at
// most reportParallel are asked at once, and an answer is reused for
// reportFresh, so several open status pages do not multiply the calls.
const (
	reportTimeout  = 3 * time.Second
	reportParallel = 16
	reportFresh    = time.Second
)

// NodeReports implements api.ClusterView: every live member's GET
// /cluster/v1/report, asked in parallel.
func (a *Agent) NodeReports(_ context.Context) api.NodeReports {
	v := &a.view
	v.mu.Lock()
	cached := v.reports
	v.mu.Unlock()
	if time.Since(cached.Asked) < reportFresh {
		return cached
	}
	// One request asks, in its own goroutine; the others wait for its answer.
	r, _, _ := v.flight.Do("reports", func() (any, error) {
		r := a.askMembers()
		v.mu.Lock()
		v.reports = r
		v.mu.Unlock()
		return r, nil
	})
	return r.(api.NodeReports)
}

// askMembers answers every waiting request, so it is bound to the agent's
// life, not to one request's context.
func (a *Agent) askMembers() api.NodeReports {
	ctx, cancel := context.WithTimeout(a.ctx, reportTimeout)
	defer cancel()
	out := api.NodeReports{Asked: time.Now(), Nodes: []api.NodeReport{}}
	var mu sync.Mutex
	g := errgroup.Group{}
	g.SetLimit(reportParallel)
	for _, m := range a.gossip.Members() {
		if m.State != gossip.StateAlive || m.Meta.API == "" {
			continue
		}
		g.Go(func() error {
			r := a.askMember(ctx, m)
			mu.Lock()
			out.Nodes = append(out.Nodes, r)
			mu.Unlock()
			return nil
		})
	}
	g.Wait()
	sort.Slice(out.Nodes, func(i, j int) bool { return out.Nodes[i].Name < out.Nodes[j].Name })
	return out
}

func (a *Agent) askMember(ctx context.Context, m gossip.Member) api.NodeReport {
	start := time.Now()
	r, err := a.fetchReport(ctx, m.Meta.API)
	r.Name, r.API, r.Seconds = m.Name, m.Meta.API, time.Since(start).Seconds()
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

func (a *Agent) fetchReport(ctx context.Context, addr string) (api.NodeReport, error) {
	var r api.NodeReport
	err := a.peerGet(ctx, addr, "/cluster/v1/report", 1<<20, &r)
	return r, err
}

// peerGet reads a JSON answer of at most limit bytes from the cluster API
// of the agent at addr.
func (a *Agent) peerGet(ctx context.Context, addr, path string, limit int64, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := a.peers.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s from %s: %s", path, addr, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, limit)).Decode(v); err != nil {
		return fmt.Errorf("GET %s from %s: %w", path, addr, err)
	}
	return nil
}

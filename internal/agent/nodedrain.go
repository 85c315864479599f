package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/errs"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

// SetNodeDrain implements api.ClusterView: this node's flag directly,
// another member's through its cluster API with the caller's token.
func (a *Agent) SetNodeDrain(ctx context.Context, name string, drained bool, authorization string) error {
	if name == a.cfg.Node {
		return a.SetDrain(drained)
	}
	m, ok := a.member(name)
	if !ok {
		return errs.NotFound("no member %q", name)
	}
	if m.State != gossip.StateAlive || m.Meta.API == "" {
		return errs.Conflict("%s is %s: its drain flag cannot be changed now", name, m.State)
	}
	method := http.MethodDelete
	if drained {
		method = http.MethodPut
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "https://"+m.Meta.API+"/v1/drain", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", authorization)
	resp, err := a.peers.Do(req)
	if err != nil {
		return api.NewProblem(http.StatusBadGateway, fmt.Sprintf("%s: %v", name, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	code := resp.StatusCode
	if code == http.StatusUnauthorized {
		// The token is good here (the call got this far): the member has
		// another one. A 401 would make a client drop a good token.
		code = http.StatusForbidden
	}
	var p api.Problem
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&p); err != nil || p.Detail == "" {
		p.Detail = resp.Status
	}
	return api.NewProblem(code, fmt.Sprintf("%s answered: %s", name, p.Detail))
}

func (a *Agent) member(name string) (gossip.Member, bool) {
	for _, m := range a.gossip.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return gossip.Member{}, false
}

package agent

import (
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/nodeagent/nodeagent/internal/api"
)

var _ api.ClusterView = (*Agent)(nil)

// viewState is the agent's part of the cluster view: the history and the
// last member reports.
type viewState struct {
	history *history

	flight  singleflight.Group
	mu      sync.Mutex
	reports api.NodeReports
}

// openView starts the history; the watch loop feeds it.
func (a *Agent) openView() {
	a.view.history = newHistory(time.Now())
}

// History implements api.ClusterView.
func (a *Agent) History() api.History { return a.view.history.snapshot() }

// Deploys implements api.ClusterView.
func (a *Agent) Deploys() []api.Deploy {
	r := &a.deploys
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]api.Deploy, 0, len(r.order))
	for i := len(r.order) - 1; i >= 0; i-- {
		out = append(out, copyDeploy(r.runs[r.order[i]]))
	}
	return out
}

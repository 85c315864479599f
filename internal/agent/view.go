package agent

import (
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/procedure"
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

// Deploys implements api.ClusterView: the deploys and the after_all
// follow-ups, newest first.
func (a *Agent) Deploys() []api.Deploy {
	c, ok := a.role.(*controller)
	if !ok {
		return nil
	}
	recs := append(c.deploys.List(), c.followUps.List()...)
	slices.SortStableFunc(recs, func(x, y procedure.Record[deployData]) int { return y.Started.Compare(x.Started) })
	out := make([]api.Deploy, len(recs))
	for i, r := range recs {
		out[i] = deployRecord(r)
	}
	return out
}

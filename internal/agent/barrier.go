package agent

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

// waitWebNodes waits until every live web node's metadata satisfies ok.
// Nodes that are dead or left are not waited for and are named in the
// result; a live node that does not get there within limit fails the step.
// Metadata comes by gossip; a node still waiting after
// directAfter is also asked directly over the cluster API, every
// directEvery, because gossip can be slow to carry metadata while many
// nodes change theirs at once.
func (a *Agent) waitWebNodes(ctx context.Context, limit time.Duration, what string, ok func(gossip.NodeMeta) bool) (string, error) {
	ch, cancel := a.gossip.Changes()
	defer cancel()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	direct := newMetaProbes(a)
	defer direct.close()
	start := time.Now()
	for {
		var waiting []gossip.Member
		var gone, done []string
		for _, m := range a.gossip.Members() {
			if m.Meta.Role != config.RoleWeb {
				continue
			}
			switch {
			case m.State != gossip.StateAlive:
				gone = append(gone, m.Name+" ("+m.State+")")
			case ok(m.Meta) || direct.satisfies(m.Name, ok):
				done = append(done, m.Name)
			default:
				waiting = append(waiting, m)
			}
		}
		if len(waiting) == 0 {
			detail := fmt.Sprintf("%d web nodes %s", len(done), what)
			if len(gone) > 0 {
				sort.Strings(gone)
				detail += "; not waited for: " + strings.Join(gone, ", ")
			}
			return detail, nil
		}
		if time.Since(start) >= directAfter {
			direct.ask(waiting)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-deadline.C:
			names := make([]string, len(waiting))
			for i, m := range waiting {
				names[i] = m.Name
			}
			sort.Strings(names)
			return "", fmt.Errorf("after %s, web nodes still did not %s: %s", limit, what, strings.Join(names, ", "))
		case <-ch:
		case <-tick.C:
		case ans := <-direct.answers:
			direct.record(ans)
		}
	}
}

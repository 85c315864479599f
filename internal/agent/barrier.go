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

// seenWindow is how far back a web node counts as one the cluster has: a
// procedure that needs every web node waits for those seen alive within it.
const seenWindow = time.Hour

// missingWait is how long an honest barrier, once every live web node is
// there, still waits for missing ones to come back (a restarting agent)
// before it fails. A variable so tests can shorten it.
var missingWait = 30 * time.Second

// barrier is one wait of a procedure for the web nodes.
type barrier struct {
	limit time.Duration              // a live node not there by then fails the wait
	what  string                     // "serve revision 6", in the detail
	ok    func(gossip.NodeMeta) bool // the node got there
	// honest: fewer web nodes there than the cluster had (the web nodes
	// seen in the last hour, at least deploy.min_web) fail the wait...
	honest bool
	// ...unless the operator allowed it.
	allowMissing bool
}

// webRound is one look at the web nodes during a barrier.
type webRound struct {
	done    []string        // alive and there
	waiting []gossip.Member // alive, not there yet
	missing []gossip.Member // not alive, seen within seenWindow
}

// waitWebNodes waits until every live web node's metadata satisfies ok.
// Web nodes not alive are not waited for and are named in the result.
func (a *Agent) waitWebNodes(ctx context.Context, limit time.Duration, what string, ok func(gossip.NodeMeta) bool) (string, error) {
	return a.wait(ctx, barrier{limit: limit, what: what, ok: ok})
}

// wait runs barrier b. Metadata comes by gossip; a node still waiting
// after directAfter is also asked directly over the cluster API, every
// directEvery, because gossip can be slow to carry metadata while many
// nodes change theirs at once. The result always names the nodes waited
// for and those that were not.
func (a *Agent) wait(ctx context.Context, b barrier) (string, error) {
	ch, cancel := a.gossip.Changes()
	defer cancel()
	deadline := time.NewTimer(b.limit)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	direct := newMetaProbes(a)
	defer direct.close()
	start := time.Now()
	var short time.Time // since when every live node is there, but too few
	for {
		r := a.webRound(b.ok, direct)
		expected := max(len(r.done)+len(r.missing), a.cfg.Deploy.MinWeb)
		enough := !b.honest || b.allowMissing || len(r.done) >= expected
		switch {
		case len(r.waiting) > 0:
			short = time.Time{}
		case enough:
			return r.detail(b, expected), nil
		case short.IsZero():
			short = time.Now()
		case time.Since(short) >= missingWait:
			return "", r.tooFew(b, expected, a.cfg.Deploy.MinWeb)
		}
		if time.Since(start) >= directAfter {
			direct.ask(r.waiting)
		}
		select {
		case <-ctx.Done():
			return "", context.Cause(ctx)
		case <-deadline.C:
			if len(r.waiting) == 0 {
				return "", r.tooFew(b, expected, a.cfg.Deploy.MinWeb)
			}
			return "", fmt.Errorf("after %s, web nodes still did not %s: %s", b.limit, b.what, strings.Join(memberNames(r.waiting), ", "))
		case <-ch:
		case <-tick.C:
		case ans := <-direct.answers:
			direct.record(ans)
		}
	}
}

// webRound sorts the web nodes gossip knows for one look.
func (a *Agent) webRound(ok func(gossip.NodeMeta) bool, direct *metaProbes) webRound {
	var r webRound
	now := time.Now()
	for _, m := range a.gossip.Members() {
		switch {
		case m.Meta.Role != config.RoleWeb:
		case m.State != gossip.StateAlive:
			if now.Sub(m.Since) <= seenWindow {
				r.missing = append(r.missing, m)
			}
		case ok(m.Meta) || direct.satisfies(m.Name, ok):
			r.done = append(r.done, m.Name)
		default:
			r.waiting = append(r.waiting, m)
		}
	}
	sort.Strings(r.done)
	return r
}

// detail is the step's line once the barrier passed, e.g. "2 web nodes
// serve revision 6; waited for: web-1, web-2".
func (r webRound) detail(b barrier, expected int) string {
	s := fmt.Sprintf("%d web nodes %s", len(r.done), b.what)
	if len(r.missing) > 0 {
		names := make([]string, len(r.missing))
		for i, m := range r.missing {
			names[i] = m.Name + " (" + m.State + ")"
		}
		s += "; not waited for: " + strings.Join(names, ", ")
	}
	s += "; waited for: " + orNone(r.done)
	if b.honest && len(r.done) < expected {
		s += fmt.Sprintf("; %d of %d web nodes, going on without the others (-allow-missing)", len(r.done), expected)
	}
	return s
}

// tooFew is the error of an honest barrier that every live node passed
// while the cluster had more web nodes than that.
func (r webRound) tooFew(b barrier, expected, minWeb int) error {
	now := time.Now()
	missing := make([]string, len(r.missing))
	for i, m := range r.missing {
		missing[i] = fmt.Sprintf("%s (%s, last seen %s ago)", m.Name, m.State, now.Sub(m.Since).Round(time.Second))
	}
	return fmt.Errorf("only %d of %d web nodes %s (the cluster's web nodes seen in the last hour, at least deploy.min_web %d): "+
		"waited for: %s; missing: %s; nothing further runs: bring them back, or rerun with -allow-missing to go on without them "+
		"(a node removed for good: nodeagent forget NODE, once)",
		len(r.done), expected, b.what, minWeb, orNone(r.done), orNone(missing))
}

func memberNames(ms []gossip.Member) []string {
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	sort.Strings(names)
	return names
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

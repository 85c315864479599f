package agent

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

// A split is visible: a web node that has seen no live controller for
// splitAfter says so (readiness check gossip:controller at warn, never
// fail: a controller outage must not empty the load balancer; /v1/status;
// a metric; one log line when it starts and one when it ends), and the
// controller reports the web nodes it saw alive within webRecent that have
// not been alive for splitAfter.

// splitProbes is how many gossip probe intervals a member may go unseen
// before it counts as missing: 30 s with the LAN timing (probe 1 s), far
// beyond memberlist's failure detection (about 5 s), short enough that an
// operator hears of a split before users do.
const splitProbes = 30

// webRecent is how long the controller keeps reporting a web node that is
// gone: the deploy barrier's "web nodes the cluster had" use the same hour.
const webRecent = time.Hour

// splitAfter is how long a member may go unseen before it counts as missing.
func (a *Agent) splitAfter() time.Duration {
	return splitProbes * a.opts.GossipTiming.WithDefaults().ProbeInterval
}

// controllerSeen is a web node's view of the controller.
func (a *Agent) controllerSeen(ms []gossip.Member, now time.Time) api.ControllerStatus {
	var st api.ControllerStatus
	var last, started time.Time
	for _, m := range ms {
		switch {
		case m.Name == a.cfg.Node:
			started = m.Since // when this node's gossip started
		case m.Meta.Role != config.RoleController:
		case m.State == gossip.StateAlive:
			return api.ControllerStatus{Alive: true, Name: m.Name, LastSeen: &now}
		case m.Since.After(last):
			st.Name, last = m.Name, m.Since
			st.LastSeen = &m.Since
		}
	}
	// Without one since this node started counts from the start.
	since := last
	if started.After(since) {
		since = started
	}
	if since.IsZero() {
		return st
	}
	st.UnseenSeconds = now.Sub(since).Seconds()
	st.Missing = now.Sub(since) >= a.splitAfter()
	return st
}

// missingWeb is the controller's list of web nodes seen alive within
// webRecent that have not been alive for splitAfter, by name.
func (a *Agent) missingWeb(ms []gossip.Member, now time.Time) []api.MissingMember {
	var out []api.MissingMember
	for _, m := range ms {
		gone := now.Sub(m.Since)
		if m.Meta.Role == config.RoleWeb && m.State != gossip.StateAlive && gone >= a.splitAfter() && gone <= webRecent {
			out = append(out, api.MissingMember{Name: m.Name, State: m.State, Since: m.Since})
		}
	}
	return out
}

// gossipStatus is the gossip section of /v1/status.
func (a *Agent) gossipStatus() *api.GossipStatus {
	if a.gossip == nil {
		return nil
	}
	ms, now := a.gossip.Members(), time.Now()
	if a.cfg.Role == config.RoleController {
		return &api.GossipStatus{MissingWeb: a.missingWeb(ms, now)}
	}
	st := a.controllerSeen(ms, now)
	return &api.GossipStatus{Controller: &st}
}

// splitChecks adds gossip:controller on web nodes: warn when no live
// controller was seen for splitAfter.
func (a *Agent) splitChecks(checks map[string][]api.Check) {
	if a.cfg.Role != config.RoleWeb || a.gossip == nil {
		return
	}
	now := time.Now()
	st := a.controllerSeen(a.gossip.Members(), now)
	c := api.Check{Status: api.StatusPass, Time: now, ObservedValue: st.UnseenSeconds}
	if st.Missing {
		c.Status, c.Output = api.StatusWarn, noControllerText(st)
	}
	checks["gossip:controller"] = []api.Check{c}
}

func noControllerText(st api.ControllerStatus) string {
	s := fmt.Sprintf("no live controller seen for %s", seconds(st.UnseenSeconds).Round(time.Second))
	if st.LastSeen != nil {
		s += fmt.Sprintf(" (%s last seen %s)", st.Name, st.LastSeen.Format(time.RFC3339))
	}
	return s + ": serving the applied release, no new revision can arrive"
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// startSplitWatch registers the split metrics and starts the loop that
// logs a split once when it starts and once when it ends.
func (a *Agent) startSplitWatch() {
	a.metrics.reg.MustRegister(splitCollector{a})
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.watchSplit()
	}()
}

func (a *Agent) watchSplit() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var w splitLog
	for {
		ms, now := a.gossip.Members(), time.Now()
		if a.cfg.Role == config.RoleController {
			w.web(a, a.missingWeb(ms, now))
		} else {
			w.controller(a, a.controllerSeen(ms, now))
		}
		select {
		case <-a.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// splitLog remembers what was logged, so that each change is logged once.
type splitLog struct {
	noController bool
	missing      string // names of the missing web nodes, as logged
}

func (w *splitLog) controller(a *Agent, st api.ControllerStatus) {
	switch {
	case st.Missing && !w.noController:
		a.log.Warn(noControllerText(st))
	case st.Alive && w.noController:
		a.log.Info("live controller seen again", "controller", st.Name)
	default:
		return
	}
	w.noController = st.Missing
}

func (w *splitLog) web(a *Agent, missing []api.MissingMember) {
	var names []string
	for _, m := range missing {
		names = append(names, fmt.Sprintf("%s (%s since %s)", m.Name, m.State, m.Since.Format(time.RFC3339)))
	}
	slices.Sort(names)
	now := strings.Join(names, ", ")
	switch {
	case now == w.missing:
		return
	case now == "":
		a.log.Info("every web node seen in the last hour is alive again")
	default:
		a.log.Warn("web nodes seen in the last hour are gone", "count", len(names), "nodes", now)
	}
	w.missing = now
}

// splitCollector reads the split metrics at scrape time.
type splitCollector struct{ a *Agent }

var (
	descControllerUnseen = prometheus.NewDesc("nodeagent_gossip_controller_unseen_seconds",
		"Web node: seconds since a live controller was last seen (0 while one is alive); gossip:controller warns from 30.", nil, nil)
	descWebMissing = prometheus.NewDesc("nodeagent_gossip_web_missing",
		"Controller: web nodes seen alive in the last hour that have not been alive for 30 s, by state (dead, left).", []string{"state"}, nil)
)

// Describe implements prometheus.Collector.
func (c splitCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descControllerUnseen
	ch <- descWebMissing
}

// Collect implements prometheus.Collector.
func (c splitCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.a.gossipStatus()
	switch {
	case st == nil:
	case st.Controller != nil:
		ch <- prometheus.MustNewConstMetric(descControllerUnseen, prometheus.GaugeValue, st.Controller.UnseenSeconds)
	default:
		n := map[string]int{gossip.StateDead: 0, gossip.StateLeft: 0}
		for _, m := range st.MissingWeb {
			n[m.State]++
		}
		for state, v := range n {
			ch <- prometheus.MustNewConstMetric(descWebMissing, prometheus.GaugeValue, float64(v), state)
		}
	}
}

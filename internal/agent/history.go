package agent

import (
	"sync"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

// History bounds: what GET /v1/history keeps in memory.
const (
	historyWindow   = 6 * time.Hour
	historySamples  = 2000 // lag samples
	historySyncs    = 500
	historyTargets  = 100
	lagSampleBehind = 5 * time.Second // sampling while a node is behind
	lagSampleIdle   = time.Minute     // and while none is
)

// history records what this agent sees of the cluster through gossip: lag
// samples, the web nodes' revision switches and the target's changes. Every
// agent sees the same gossip, so any node answers for the whole cluster.
// It does no I/O; observe is fed by the agent's history loop.
type history struct {
	mu      sync.Mutex
	since   time.Time
	lag     []api.LagSample
	syncs   []api.SyncRecord
	targets []api.TargetChange

	observed bool // the first observation is the baseline: nothing changed yet
	target   *api.RevRef
	targetAt time.Time // when this agent saw the target change; zero for the one found at start
	maxSeq   uint64
	tracks   map[string]track // by member name
	gen      uint64           // of the current observation
	last     api.LagSample    // the last sample taken
}

// track is what history remembers of a member between two observations.
type track struct {
	rev         string
	behindSince time.Time // zero while it serves the target
	gen         uint64    // the last observation that saw the member
}

func newHistory(now time.Time) *history {
	return &history{since: now, tracks: map[string]track{}}
}

// observe takes in the cluster as seen now: the target (nil: none yet),
// the node that wrote it, and the members.
func (h *history) observe(now time.Time, target *api.RevRef, setBy string, members []gossip.Member) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.observeTarget(now, target, setBy)
	peak := h.sample(now, members)
	h.gen++
	for _, m := range members {
		if m.Meta.Role == config.RoleWeb {
			h.observeMember(now, m)
		}
	}
	for name, t := range h.tracks {
		if t.gen != h.gen { // no longer a member
			delete(h.tracks, name)
		}
	}
	cur := h.sample(now, members)
	h.record(now, peak, cur)
	h.observed = true
}

func (h *history) observeTarget(now time.Time, t *api.RevRef, setBy string) {
	if t == nil || (h.target != nil && h.target.ID == t.ID) {
		return
	}
	if h.observed {
		kind := api.TargetPublish
		if t.Seq <= h.maxSeq {
			kind = api.TargetRollback
		}
		h.targets = appendBounded(h.targets, api.TargetChange{Time: now, Seq: t.Seq, ID: t.ID, SetBy: setBy, Kind: kind}, historyTargets)
		h.targetAt = now
	}
	h.target = &api.RevRef{Seq: t.Seq, ID: t.ID}
	h.maxSeq = max(h.maxSeq, t.Seq)
}

// observeMember updates a web member's track and records its switch to a
// new revision. A switch seen at the first sight of a member is not
// recorded: its start is unknown. A switch seen together with the target
// change that caused it (one observation saw both) started when the
// target changed here, at the latest: its duration is then a lower bound.
func (h *history) observeMember(now time.Time, m gossip.Member) {
	prev, known := h.tracks[m.Name]
	cur := track{rev: m.Meta.Rev, gen: h.gen}
	if h.target != nil && m.Meta.Rev != h.target.ID {
		cur.behindSince = prev.behindSince
		if cur.behindSince.IsZero() {
			cur.behindSince = h.behindStart(now, m)
		}
	}
	if known && prev.rev != cur.rev && cur.rev != "" {
		start := prev.behindSince
		if start.IsZero() {
			start = h.behindStart(now, gossip.Member{})
		}
		h.syncs = appendBounded(h.syncs, api.SyncRecord{
			Node: m.Name, Seq: m.Meta.Seq, ID: m.Meta.Rev,
			Started: start, Finished: now, Seconds: now.Sub(start).Seconds(),
		}, historySyncs)
	}
	h.tracks[m.Name] = cur
}

// behindStart is when a member fell behind: the later of the time it
// reports (whole seconds, its own clock) and the time the target changed
// here, or now when neither is known.
func (h *history) behindStart(now time.Time, m gossip.Member) time.Time {
	start := h.targetAt
	if m.Meta.Behind > 0 {
		if reported := time.Unix(m.Meta.Behind, 0); reported.After(start) {
			start = reported
		}
	}
	if start.IsZero() || start.After(now) {
		return now
	}
	return start
}

// sample is the lag of the live web members as tracked at the moment.
func (h *history) sample(now time.Time, members []gossip.Member) api.LagSample {
	s := api.LagSample{Time: now}
	for _, m := range members {
		if m.Meta.Role != config.RoleWeb || m.State != gossip.StateAlive {
			continue
		}
		s.Web++
		t, ok := h.tracks[m.Name]
		if !ok || t.behindSince.IsZero() {
			continue
		}
		s.Behind++
		s.MaxLagSeconds = max(s.MaxLagSeconds, now.Sub(t.behindSince).Seconds())
	}
	return s
}

// record keeps a sample when the number of nodes behind changed, or after
// the sampling interval. When nodes caught up, the lag they had just before
// is kept too, so the chart shows the peak.
func (h *history) record(now time.Time, peak, cur api.LagSample) {
	every := lagSampleIdle
	if cur.Behind > 0 {
		every = lagSampleBehind
	}
	changed := cur.Behind != h.last.Behind || cur.Web != h.last.Web
	if !changed && now.Sub(h.last.Time) < every {
		return
	}
	if cur.Behind < peak.Behind {
		h.push(peak)
	}
	h.push(cur)
}

func (h *history) push(s api.LagSample) {
	h.lag = appendBounded(h.lag, s, historySamples)
	cut := 0
	for cut < len(h.lag) && s.Time.Sub(h.lag[cut].Time) > historyWindow {
		cut++
	}
	h.lag = h.lag[cut:]
	h.last = s
}

// snapshot is the body of GET /v1/history.
func (h *history) snapshot() api.History {
	h.mu.Lock()
	defer h.mu.Unlock()
	return api.History{
		Since:   h.since,
		Lag:     append([]api.LagSample{}, h.lag...),
		Syncs:   append([]api.SyncRecord{}, h.syncs...),
		Targets: append([]api.TargetChange{}, h.targets...),
	}
}

// appendBounded appends v, dropping the oldest entries beyond limit. The
// dropped entries stay in the array until append moves the slice to a new
// one: amortized constant time, at most about twice limit in memory.
func appendBounded[T any](s []T, v T, limit int) []T {
	s = append(s, v)
	if len(s) > limit {
		s = s[len(s)-limit:]
	}
	return s
}

// observeHistory feeds the history from gossip; the watch loop calls it at
// every change and every second, so lag samples are taken while nothing
// changes.
func (a *Agent) observeHistory() {
	t, _ := a.state.Target()
	a.view.history.observe(time.Now(), a.currentTarget(), t.SetBy, a.gossip.Members())
}

package agent

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

func webMember(name string, seq uint64, behind time.Time) gossip.Member {
	m := gossip.Member{Name: name, State: gossip.StateAlive, Meta: gossip.NodeMeta{Role: config.RoleWeb, Seq: seq, Rev: revID(seq)}}
	if !behind.IsZero() {
		m.Meta.Behind = behind.Unix()
	}
	return m
}

func revID(seq uint64) string { return strings.Repeat(fmt.Sprintf("%02x", seq), 32) }

func ref(seq uint64) *api.RevRef { return &api.RevRef{Seq: seq, ID: revID(seq)} }

// TestHistoryStaysBounded: however long the agent runs and however busy
// the cluster, the history keeps at most its bounds: samples of the last
// hours, the last syncs and target changes.
func TestHistoryStaysBounded(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := newHistory(start)
	now := start
	for i := range 20000 {
		now = now.Add(3 * time.Second)
		seq := uint64(i/2 + 1)
		// Every other observation a new target; the node follows one
		// observation later: a sync each time, and lag in between.
		h.observe(now, ref(seq), "controller", []gossip.Member{webMember("web-1", uint64((i+1)/2), time.Time{})})
	}
	s := h.snapshot()
	if len(s.Lag) > historySamples || len(s.Syncs) != historySyncs || len(s.Targets) != historyTargets {
		t.Fatalf("bounds: %d samples, %d syncs, %d targets", len(s.Lag), len(s.Syncs), len(s.Targets))
	}
	if oldest := s.Lag[0].Time; now.Sub(oldest) > historyWindow {
		t.Fatalf("oldest sample %s, %s before the newest", oldest, now.Sub(oldest))
	}
	last := s.Syncs[len(s.Syncs)-1]
	if last.Node != "web-1" || last.Seconds != 3 || now.Sub(last.Finished) > 3*time.Second {
		t.Fatalf("last sync %+v at %s", last, now)
	}
}

// TestHistoryLagPeak: when a node catches up, the sample just before keeps
// the lag it reached, so the chart shows the peak, then the drop to zero.
func TestHistoryLagPeak(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := newHistory(start)
	h.observe(start, ref(1), "controller", []gossip.Member{webMember("web-1", 1, time.Time{})})
	at := start.Add(time.Second)
	h.observe(at, ref(2), "controller", []gossip.Member{webMember("web-1", 1, at)})
	for i := 2; i <= 12; i++ {
		h.observe(start.Add(time.Duration(i)*time.Second), ref(2), "controller", []gossip.Member{webMember("web-1", 1, at)})
	}
	done := start.Add(13 * time.Second)
	h.observe(done, ref(2), "controller", []gossip.Member{webMember("web-1", 2, time.Time{})})
	s := h.snapshot()
	n := len(s.Lag)
	if n < 3 || s.Lag[n-2].MaxLagSeconds != 12 || s.Lag[n-2].Behind != 1 || s.Lag[n-1].MaxLagSeconds != 0 || s.Lag[n-1].Behind != 0 {
		t.Fatalf("lag samples %+v: want the 12 s peak, then 0", s.Lag)
	}
	if len(s.Syncs) != 1 || s.Syncs[0].Seconds != 12 || s.Syncs[0].Seq != 2 {
		t.Fatalf("syncs %+v", s.Syncs)
	}
	if len(s.Targets) != 1 || s.Targets[0].Kind != api.TargetPublish || s.Targets[0].Seq != 2 {
		t.Fatalf("targets %+v", s.Targets)
	}
}

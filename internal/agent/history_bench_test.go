package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/gossip"
)

// BenchmarkHistoryObserve measures one observation of the history with
// 200 live web nodes in sync: the work the watch loop adds every second
// and at every gossip change. The anchor is a second of one core: the
// time per observation divided by 1 s is the share of a core it takes at
// one observation a second.
//
//	go test -run '^$' -bench HistoryObserve -count 3 ./internal/agent/
func BenchmarkHistoryObserve(b *testing.B) {
	members := make([]gossip.Member, 200)
	for i := range members {
		members[i] = webMember(fmt.Sprintf("web-%03d", i), 7, time.Time{})
	}
	h := newHistory(time.Now())
	now := time.Now()
	for b.Loop() {
		now = now.Add(time.Second)
		h.observe(now, ref(7), "controller", members)
	}
}

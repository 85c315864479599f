package gossip_test

// BenchmarkMetaBurst50 is the reproducer of the "metadata not spread for
// 50 s" stall: 50 nodes with the LAN timing that all joined the first one,
// push/pull off, and every iteration a burst in which every node changes
// its metadata at once (a maintenance toggle). After the gossip settles it
// counts, over all (viewer, member) pairs, the views still stale, and the
// updates no other node received at all. Rerun with:
//
//	go test -run '^$' -bench MetaBurst50 -benchtime 10x ./internal/gossip/
//	go test -run '^$' -bench MetaBurst50 -benchtime 10x ./internal/gossip/ -burst.stock -burst.retransmit 4
//
// -burst.stock leaves memberlist's queues unpinned (its bug), and
// -burst.retransmit sets RetransmitMult (memberlist's default is 4, the
// agent's 6).

import (
	"flag"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/gossip"
)

var (
	burstStock      = flag.Bool("burst.stock", false, "BenchmarkMetaBurst50: memberlist's queues unpinned")
	burstRetransmit = flag.Int("burst.retransmit", 0, "BenchmarkMetaBurst50: RetransmitMult (0: the agent's)")
	burstSettle     = flag.Duration("burst.settle", 20*time.Second, "BenchmarkMetaBurst50: how long a burst may take")
)

func BenchmarkMetaBurst50(b *testing.B) {
	const n = 50
	key := MustKey(b)
	var nodes []*gossip.Gossip
	for i := range n {
		cfg := testConfig(fmt.Sprintf("n%02d", i), key)
		cfg.Timing = gossip.Timing{PushPullInterval: time.Hour, RetransmitMult: *burstRetransmit}
		cfg.StockQueues = *burstStock
		if i > 0 {
			cfg.Join = []string{nodes[0].Addr()}
		}
		nodes = append(nodes, MustOpen(b, cfg))
	}
	formCluster(b, nodes)
	var stale, lost, pairs int
	round := uint64(0)
	for b.Loop() {
		round++
		var wg sync.WaitGroup
		for _, g := range nodes {
			wg.Go(func() {
				m := g.Meta()
				m.Seq = round
				_ = g.SetMeta(m)
			})
		}
		wg.Wait()
		s, l := settleBurst(nodes, round, *burstSettle)
		b.Logf("burst %d: %d stale views of %d, updates that reached no other node: %v", round, s, n*(n-1), l)
		stale, lost, pairs = stale+s, lost+len(l), pairs+n*(n-1)
	}
	b.ReportMetric(float64(stale)/float64(round), "stale-views/burst")
	b.ReportMetric(float64(lost)/float64(round), "lost-updates/burst")
	b.Logf("%d bursts: %d stale views of %d (%.1e), %d updates lost entirely", round, stale, pairs, float64(stale)/float64(pairs), lost)
}

// settleBurst waits until every node sees every update of seq, or timeout;
// it returns the stale views left and the updates no other node has.
func settleBurst(nodes []*gossip.Gossip, seq uint64, timeout time.Duration) (int, []string) {
	deadline := time.Now().Add(timeout)
	for {
		stale := 0
		for _, g := range nodes {
			for _, m := range g.Members() {
				if m.Meta.Seq != seq {
					stale++
				}
			}
		}
		if stale == 0 || time.Now().After(deadline) {
			return stale, lostUpdates(nodes, seq)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

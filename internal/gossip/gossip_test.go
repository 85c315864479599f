package gossip_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// waitTimeout is sized for a loaded 2-core machine running the race detector.
const waitTimeout = 30 * time.Second

func MustKey(tb testing.TB) []byte {
	tb.Helper()
	k := make([]byte, gossip.KeySize)
	if _, err := rand.Read(k); err != nil {
		tb.Fatal(err)
	}
	return k
}

// testConfig returns a loopback config with fast timings.
func testConfig(name string, key []byte) gossip.Config {
	return gossip.Config{
		Name:        name,
		Bind:        "127.0.0.1:0",
		Key:         key,
		Meta:        gossip.NodeMeta{Role: "web", API: "127.0.0.1:7947"},
		Timing:      gossip.TestTiming(),
		JoinBackoff: 20 * time.Millisecond,
		Logger:      slog.New(slog.DiscardHandler),
	}
}

// MustOpen opens a node and closes it at the end of the test.
func MustOpen(tb testing.TB, cfg gossip.Config) *gossip.Gossip {
	tb.Helper()
	g := gossip.New(cfg)
	if err := g.Open(context.Background()); err != nil {
		tb.Fatalf("open %s: %v", cfg.Name, err)
	}
	tb.Cleanup(func() { _ = g.Close() })
	return g
}

// MustCluster opens n nodes named n0..n(n-1), each joining all the ones
// before it (so membership does not depend on periodic push/pull). opts
// adjust every node's config.
func MustCluster(tb testing.TB, n int, key []byte, opts ...func(*gossip.Config)) []*gossip.Gossip {
	tb.Helper()
	var nodes []*gossip.Gossip
	for i := range n {
		cfg := testConfig(fmt.Sprintf("n%d", i), key)
		for _, g := range nodes {
			cfg.Join = append(cfg.Join, g.Addr())
		}
		for _, o := range opts {
			o(&cfg)
		}
		nodes = append(nodes, MustOpen(tb, cfg))
	}
	waitAll(tb, nodes, "all alive", func(g *gossip.Gossip) bool {
		return countState(g.Members(), gossip.StateAlive) == n
	})
	return nodes
}

// waitFor polls cond until it holds or the deadline passes; on failure it
// shows the members seen by the nodes given.
func waitFor(tb testing.TB, what string, cond func() bool, show ...*gossip.Gossip) {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			for _, g := range show {
				for _, m := range g.Members() {
					tb.Logf("%s sees %s %s %s since %s", g.LocalName(), m.Name, m.Addr, m.State, m.Since.Format(time.StampMilli))
				}
			}
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitAll(tb testing.TB, nodes []*gossip.Gossip, what string, cond func(*gossip.Gossip) bool) {
	tb.Helper()
	for _, g := range nodes {
		waitFor(tb, g.LocalName()+": "+what, func() bool { return cond(g) }, g)
	}
}

func countState(ms []gossip.Member, state string) int {
	n := 0
	for _, m := range ms {
		if m.State == state {
			n++
		}
	}
	return n
}

func member(g *gossip.Gossip, name string) (gossip.Member, bool) {
	for _, m := range g.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return gossip.Member{}, false
}

func memberState(g *gossip.Gossip, name string) string {
	m, _ := member(g, name)
	return m.State
}

func TestMembersAndMeta(t *testing.T) {
	t.Parallel()
	nodes := MustCluster(t, 3, MustKey(t))

	for _, g := range nodes {
		ms := g.Members()
		for i, m := range ms {
			want := nodes[i]
			if m.Name != want.LocalName() || m.Addr != want.Addr() {
				t.Errorf("%s: member %d = %s@%s, want %s@%s (sorted by name)", g.LocalName(), i, m.Name, m.Addr, want.LocalName(), want.Addr())
			}
			if m.Meta.Role != "web" || m.Meta.API != "127.0.0.1:7947" {
				t.Errorf("%s: member %s meta = %+v", g.LocalName(), m.Name, m.Meta)
			}
			if m.Since.IsZero() {
				t.Errorf("%s: member %s has no Since", g.LocalName(), m.Name)
			}
		}
	}

	changes, cancel := nodes[2].Changes()
	meta := gossip.NodeMeta{Role: "web", API: "127.0.0.1:7947", Seq: 7, Rev: strings.Repeat("ab", 32), Ready: true, Drained: true, Maint: 3, Version: "1.2.3"}
	if err := nodes[1].SetMeta(meta); err != nil {
		t.Fatal(err)
	}
	if got := nodes[1].Meta(); got != meta {
		t.Fatalf("Meta() = %+v, want %+v", got, meta)
	}
	waitAll(t, nodes, "n1 meta", func(g *gossip.Gossip) bool {
		m, _ := member(g, "n1")
		return m.Meta == meta
	})
	select {
	case <-changes:
	default:
		t.Error("n2: no change signalled for n1's meta update")
	}
	cancel()
	cancel()
	if _, open := <-changes; open {
		t.Error("Changes channel still open after cancel")
	}

	big := meta
	big.Version = strings.Repeat("x", 600)
	if err := nodes[1].SetMeta(big); !errors.Is(err, gossip.ErrTooLarge) {
		t.Fatalf("SetMeta(600 bytes) = %v, want ErrTooLarge", err)
	}
	if got := nodes[1].Meta(); got != meta {
		t.Fatalf("Meta() after a refused SetMeta = %+v, want %+v", got, meta)
	}
}

func TestRegisterSpreads(t *testing.T) {
	t.Parallel()
	key := MustKey(t)
	// Ten nodes and no periodic push/pull: the writer alone transmits a
	// broadcast 8 times (RetransmitMult 4 · ceil(log10(11))), fewer than its
	// 9 peers, so with its direct datagrams lost the register reaches all
	// of them only if receivers re-broadcast it.
	nodes := MustCluster(t, 10, key, func(c *gossip.Config) { c.Timing.PushPullInterval = time.Hour })
	nodes[0].DisableFanOut()

	changes, cancel := nodes[9].Changes()
	defer cancel()
	type maint struct {
		Enabled bool   `json:"enabled"`
		Message string `json:"message"`
	}
	want, err := nodes[0].Set("maintenance", maint{Enabled: true, Message: "upgrade"})
	if err != nil {
		t.Fatal(err)
	}
	if want.Node != "n0" || want.Clock == 0 || string(want.Value) != `{"enabled":true,"message":"upgrade"}` {
		t.Fatalf("Set returned %+v", want)
	}
	waitAll(t, nodes, "register", func(g *gossip.Gossip) bool {
		r, ok := g.Get("maintenance")
		return ok && sameRegister(r, want)
	})
	select {
	case <-changes:
	default:
		t.Error("n9: no change signalled for the register")
	}

	// A node that joins after the broadcasts gets the register by push/pull,
	// and keeps it in its state file across a restart while alone.
	stateFile := filepath.Join(t.TempDir(), "state.json")
	cfg := testConfig("late", key)
	cfg.Join = []string{nodes[1].Addr()}
	cfg.StateFile = stateFile
	late := MustOpen(t, cfg)
	waitFor(t, "late node gets the register", func() bool {
		r, ok := late.Get("maintenance")
		return ok && sameRegister(r, want)
	})
	if err := late.Close(); err != nil {
		t.Fatal(err)
	}

	cfg.Name, cfg.Join = "late", nil
	restarted := MustOpen(t, cfg)
	r, ok := restarted.Get("maintenance")
	if !ok || !sameRegister(r, want) {
		t.Fatalf("after restart Get = %+v, %v; want %+v", r, ok, want)
	}
	var m maint
	if err := json.Unmarshal(r.Value, &m); err != nil || !m.Enabled || m.Message != "upgrade" {
		t.Fatalf("value = %s (%v)", r.Value, err)
	}
	// The Lamport clock survives too: a new write is ordered after it.
	next, err := restarted.Set("other", 1)
	if err != nil {
		t.Fatal(err)
	}
	if next.Clock <= want.Clock {
		t.Fatalf("clock after restart = %d, want > %d", next.Clock, want.Clock)
	}

	// A node joining the restarted one, which has no broadcast in flight,
	// gets both registers from the join's push/pull.
	cfg = testConfig("fresh", key)
	cfg.Join = []string{restarted.Addr()}
	fresh := MustOpen(t, cfg)
	waitFor(t, "fresh node gets the registers by push/pull", func() bool {
		r1, ok1 := fresh.Get("maintenance")
		r2, ok2 := fresh.Get("other")
		return ok1 && ok2 && sameRegister(r1, want) && sameRegister(r2, next)
	})
}

// directOnly stops periodic gossip, probes (which piggyback broadcasts) and
// push/pull: only what a node sends directly reaches the others.
func directOnly(c *gossip.Config) {
	c.Timing.GossipInterval = time.Hour
	c.Timing.ProbeInterval = time.Hour
	c.Timing.PushPullInterval = time.Hour
}

// TestRegisterSentDirectly: a register change reaches every member at once,
// without waiting for room in gossip packets. With periodic gossip, probes
// (which piggyback broadcasts) and push/pull all stopped, only the writer's
// direct datagrams can carry it.
func TestRegisterSentDirectly(t *testing.T) {
	t.Parallel()
	nodes := MustCluster(t, 5, MustKey(t), directOnly)
	want, err := nodes[2].Set("target", map[string]any{"seq": 7})
	if err != nil {
		t.Fatal(err)
	}
	waitAll(t, nodes, "register sent directly", func(g *gossip.Gossip) bool {
		r, ok := g.Get("target")
		return ok && sameRegister(r, want)
	})
}

// TestMetaSentDirectly: a metadata change reaches every member at once,
// without waiting for gossip to carry the node's alive message: with
// periodic gossip, probes and push/pull all stopped, only the node's direct
// datagrams can carry it.
func TestMetaSentDirectly(t *testing.T) {
	t.Parallel()
	nodes := MustCluster(t, 5, MustKey(t), directOnly)
	m := nodes[3].Meta()
	m.Seq, m.Rev = 9, strings.Repeat("ab", 32)
	if err := nodes[3].SetMeta(m); err != nil {
		t.Fatal(err)
	}
	waitAll(t, nodes, "metadata sent directly", func(g *gossip.Gossip) bool {
		got, ok := member(g, "n3")
		return ok && got.State == gossip.StateAlive && got.Meta == m
	})
}

func sameRegister(a, b gossip.Register) bool {
	return a.Clock == b.Clock && a.Node == b.Node && string(a.Value) == string(b.Value)
}

func TestConcurrentSetSameWinner(t *testing.T) {
	t.Parallel()
	nodes := MustCluster(t, 3, MustKey(t))

	// n1 and n2 write at the same time, most likely with the same clock.
	var wg sync.WaitGroup
	regs := make([]gossip.Register, 2)
	for i := range regs {
		wg.Go(func() {
			r, err := nodes[i+1].Set("target", fmt.Sprintf("from-n%d", i+1))
			if err != nil {
				t.Error(err)
			}
			regs[i] = r
		})
	}
	wg.Wait()
	win := regs[0]
	if regs[1].Clock > win.Clock || (regs[1].Clock == win.Clock && regs[1].Node > win.Node) {
		win = regs[1]
	}
	waitAll(t, nodes, "the same winner", func(g *gossip.Gossip) bool {
		r, _ := g.Get("target")
		return sameRegister(r, win)
	})

	// n0 never wrote and has the lowest name: its write wins only because
	// its clock followed the registers it received.
	last, err := nodes[0].Set("target", "from-n0")
	if err != nil {
		t.Fatal(err)
	}
	waitAll(t, nodes, "n0's later write", func(g *gossip.Gossip) bool {
		r, _ := g.Get("target")
		return sameRegister(r, last)
	})
}

func TestDeadAndLeft(t *testing.T) {
	t.Parallel()
	nodes := MustCluster(t, 4, MustKey(t))

	if err := nodes[1].Kill(); err != nil {
		t.Fatal(err)
	}
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	if err := nodes[2].Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, g := range []*gossip.Gossip{nodes[0], nodes[3]} {
		waitFor(t, g.LocalName()+" sees n1 dead and n2 left", func() bool {
			return memberState(g, "n1") == gossip.StateDead && memberState(g, "n2") == gossip.StateLeft
		})
	}
	if n := len(nodes[0].Members()); n != 4 {
		t.Fatalf("n0 lists %d members, want 4 (dead and left are kept)", n)
	}
	if _, err := nodes[2].Set("k", 1); !errors.Is(err, gossip.ErrClosed) {
		t.Fatalf("Set after Close = %v, want ErrClosed", err)
	}
}

func TestReapAndReconnect(t *testing.T) {
	t.Parallel()
	key := MustKey(t)
	timing := gossip.TestTiming()
	timing.Reap = 2 * time.Second

	a := MustOpen(t, testConfig("a", key))
	cfgB := testConfig("b", key)
	cfgB.Timing, cfgB.Join = timing, []string{a.Addr()}
	b := MustOpen(t, cfgB)
	waitFor(t, "b sees a", func() bool { return memberState(b, "a") == gossip.StateAlive })

	// a crashes and comes back on the same address with no join list: b
	// reconnects to it.
	addr := a.Addr()
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b sees a dead", func() bool { return memberState(b, "a") == gossip.StateDead })
	cfgA := testConfig("a", key)
	cfgA.Bind = addr
	a2 := MustOpen(t, cfgA)
	waitFor(t, "a and b reconnected", func() bool {
		return memberState(b, "a") == gossip.StateAlive && memberState(a2, "b") == gossip.StateAlive
	})

	// A member gone for longer than Reap is no longer listed.
	if err := a2.Kill(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b sees a gone", func() bool { return memberState(b, "a") != gossip.StateAlive })
	waitFor(t, "b forgets a", func() bool {
		_, ok := member(b, "a")
		return !ok
	})
}

func TestWrongKeyCannotJoin(t *testing.T) {
	t.Parallel()
	a := MustOpen(t, testConfig("a", MustKey(t)))
	cfg := testConfig("intruder", MustKey(t))
	cfg.Join = []string{a.Addr()}
	c := MustOpen(t, cfg)

	if _, err := c.Join(a.Addr()); err == nil {
		t.Fatal("join with another key succeeded")
	}
	for _, g := range []*gossip.Gossip{a, c} {
		if ms := g.Members(); len(ms) != 1 || ms[0].Name != g.LocalName() {
			t.Errorf("%s members = %+v, want only itself", g.LocalName(), ms)
		}
	}
}

func TestJoinRetriedUntilSeedStarts(t *testing.T) {
	t.Parallel()
	key := MustKey(t)
	addr := testutil.FreeAddr(t)

	rec := &testutil.LogRecorder{}
	cfgB := testConfig("b", key)
	cfgB.Join = []string{addr}
	cfgB.Logger = slog.New(rec)
	b := MustOpen(t, cfgB)
	waitFor(t, "b's first join attempt to fail", func() bool {
		return rec.Find(func(r slog.Record) bool {
			return r.Level == slog.LevelWarn && strings.HasPrefix(r.Message, "gossip join failed")
		})
	})

	cfgA := testConfig("a", key)
	cfgA.Bind = addr
	a := MustOpen(t, cfgA)
	for _, g := range []*gossip.Gossip{a, b} {
		waitFor(t, g.LocalName()+" sees both", func() bool {
			return countState(g.Members(), gossip.StateAlive) == 2
		})
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	key := MustKey(t)
	corrupt := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(corrupt, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		modify func(*gossip.Config)
		want   string
	}{
		{"no key", func(c *gossip.Config) { c.Key = nil }, "key is required"},
		{"short key", func(c *gossip.Config) { c.Key = key[:16] }, "key must be 32 bytes"},
		{"no name", func(c *gossip.Config) { c.Name = "" }, "name is required"},
		{"bind hostname", func(c *gossip.Config) { c.Bind = "localhost:0" }, "must be an IP"},
		{"bind port", func(c *gossip.Config) { c.Bind = "127.0.0.1:x" }, "bind"},
		{"meta too large", func(c *gossip.Config) { c.Meta.Version = strings.Repeat("v", 600) }, "too large"},
		{"corrupt state", func(c *gossip.Config) { c.StateFile = corrupt }, "read state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig("x", key)
			tt.modify(&cfg)
			g := gossip.New(cfg)
			err := g.Open(context.Background())
			if err == nil {
				g.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open error %q, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestSetErrors(t *testing.T) {
	t.Parallel()
	g := gossip.New(testConfig("x", MustKey(t)))
	if _, err := g.Set("k", 1); !errors.Is(err, gossip.ErrNotOpen) {
		t.Fatalf("Set before Open = %v, want ErrNotOpen", err)
	}
	if err := g.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.Set("k", strings.Repeat("v", 2000)); !errors.Is(err, gossip.ErrTooLarge) {
		t.Fatalf("Set(2000 bytes) = %v, want ErrTooLarge", err)
	}
	if _, err := g.Set("", 1); err == nil {
		t.Fatal("Set with an empty key succeeded")
	}
	if _, ok := g.Get("k"); ok {
		t.Fatal("a refused Set left a register")
	}
}

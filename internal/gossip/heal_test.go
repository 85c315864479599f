package gossip_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// Healing tests: periodic push/pull is off (an hour), so a heal can only
// come from the rejoin and reconnect rules, not from memberlist's
// anti-entropy happening to pick the right node.

func noPushPull(c *gossip.Config) { c.Timing.PushPullInterval = time.Hour }

// healCluster is a controller without a join list and with a state file,
// and web nodes joining it.
type healCluster struct {
	key      []byte
	ctlCfg   gossip.Config
	ctl      *gossip.Gossip
	webs     []*gossip.Gossip
	ctlMetaV string // the Version the controller advertises
}

func newHealCluster(t *testing.T, webs int, opts ...func(*gossip.Config)) *healCluster {
	t.Helper()
	h := &healCluster{key: MustKey(t)}
	opts = append(opts, noPushPull)
	h.ctlCfg = testConfig("ctl", h.key)
	h.ctlCfg.Meta.Role = "controller"
	h.ctlCfg.Meta.Version = "life-1"
	h.ctlCfg.StateFile = filepath.Join(t.TempDir(), "ctl-state.json")
	for _, o := range opts {
		o(&h.ctlCfg)
	}
	h.ctl = MustOpen(t, h.ctlCfg)
	h.ctlCfg.Bind = h.ctl.Addr() // a restart keeps the address
	for i := range webs {
		cfg := testConfig("web"+string(rune('1'+i)), h.key)
		cfg.Join = []string{h.ctl.Addr()}
		for _, o := range opts {
			o(&cfg)
		}
		h.webs = append(h.webs, MustOpen(t, cfg))
	}
	h.waitWhole(t, "life-1")
	return h
}

// stopCtl stops the controller with stop (Close, Kill) and, unless state
// is "", waits until the web nodes see it so.
func (h *healCluster) stopCtl(t *testing.T, stop func(*gossip.Gossip) error, state string) {
	t.Helper()
	if err := stop(h.ctl); err != nil {
		t.Fatal(err)
	}
	if state != "" {
		waitAll(t, h.webs, "the controller "+state, func(g *gossip.Gossip) bool {
			return memberState(g, "ctl") == state
		})
	}
}

// restartCtl starts the controller again with the same address and state
// file, and metadata that tells the new life from the old one.
func (h *healCluster) restartCtl(t *testing.T, life string) {
	t.Helper()
	cfg := h.ctlCfg
	cfg.Meta.Version = life
	h.ctl = MustOpen(t, cfg)
}

// waitIdle waits until nothing waits to be gossiped on the nodes given: a
// cluster that has been quiet for a while, where nothing but the rules under
// test can carry news.
func waitIdle(t *testing.T, nodes ...*gossip.Gossip) {
	t.Helper()
	waitAll(t, nodes, "idle", func(g *gossip.Gossip) bool { return g.Idle() })
}

// waitWhole waits until every node sees every other alive and the webs see
// the controller's metadata of the given life.
func (h *healCluster) waitWhole(t *testing.T, life string) {
	t.Helper()
	all := append([]*gossip.Gossip{h.ctl}, h.webs...)
	waitAll(t, all, "every member alive", func(g *gossip.Gossip) bool {
		return countState(g.Members(), gossip.StateAlive) == len(all)
	})
	waitAll(t, h.webs, "the controller's "+life+" metadata", func(g *gossip.Gossip) bool {
		m, _ := member(g, "ctl")
		return m.State == gossip.StateAlive && m.Meta.Version == life
	})
}

// TestGracefulRestartHeals is the reported split: the controller (no join
// list) leaves gracefully and starts again; the web nodes hold it as left,
// it sees only itself. It must rejoin the members it remembers.
func TestGracefulRestartHeals(t *testing.T) {
	t.Parallel()
	h := newHealCluster(t, 2)
	h.stopCtl(t, (*gossip.Gossip).Close, gossip.StateLeft)
	waitIdle(t, h.webs...)
	h.restartCtl(t, "life-2")
	h.waitWhole(t, "life-2")
}

// TestLeftNodeBackAtNewAddress: a node that left comes back under the
// same name from another address (a VM replaced, with its data disk): it
// is taken at once, at its new address.
func TestLeftNodeBackAtNewAddress(t *testing.T) {
	t.Parallel()
	h := newHealCluster(t, 2)
	old := h.ctl.Addr()
	h.stopCtl(t, (*gossip.Gossip).Close, gossip.StateLeft)
	waitIdle(t, h.webs...)
	h.ctlCfg.Bind = "127.0.0.1:0"
	h.restartCtl(t, "life-2")
	h.waitWhole(t, "life-2")
	for _, g := range h.webs {
		if m, _ := member(g, "ctl"); m.Addr != h.ctl.Addr() || m.Addr == old {
			t.Errorf("%s has the controller at %s, want its new address %s", g.LocalName(), m.Addr, h.ctl.Addr())
		}
	}
}

// TestCrashRestartHeals: the controller is killed and back on the same
// address before anyone noticed (LAN probe timing: a probe rarely falls in
// the gap). The web nodes still hold its old life (alive, higher
// incarnation) and it knows none of them: its new life must replace the old
// one at once.
func TestCrashRestartHeals(t *testing.T) {
	t.Parallel()
	h := newHealCluster(t, 2, func(c *gossip.Config) {
		c.Timing.ProbeInterval, c.Timing.ProbeTimeout = time.Second, 500*time.Millisecond
	})
	waitIdle(t, append(h.webs, h.ctl)...)
	h.stopCtl(t, (*gossip.Gossip).Kill, "")
	h.restartCtl(t, "life-2")
	h.waitWhole(t, "life-2")
}

// TestCrashRestartAfterDetectionHeals: killed, seen dead, then back.
func TestCrashRestartAfterDetectionHeals(t *testing.T) {
	t.Parallel()
	h := newHealCluster(t, 2)
	h.stopCtl(t, (*gossip.Gossip).Kill, gossip.StateDead)
	h.restartCtl(t, "life-2")
	h.waitWhole(t, "life-2")
}

// TestLeftMemberRetried: a node that left comes back with nothing — no
// state file, no join list (a controller VM rebuilt under the same name and
// address). The members that saw it leave find it.
func TestLeftMemberRetried(t *testing.T) {
	t.Parallel()
	h := newHealCluster(t, 2)
	h.stopCtl(t, (*gossip.Gossip).Close, gossip.StateLeft)
	h.ctlCfg.StateFile = ""
	h.restartCtl(t, "life-2")
	h.waitWhole(t, "life-2")
}

// TestJoinListRetriedWhileNotAlone: web-1 lists the controller and web-2;
// only web-2 answered at start. The controller comes up later, fresh and
// without a join list: web-1 is not alone, but its join list names an
// address no live member holds, so it keeps trying it.
func TestJoinListRetriedWhileNotAlone(t *testing.T) {
	t.Parallel()
	key := MustKey(t)
	ctlAddr := testutil.FreeAddr(t)
	cfg2 := testConfig("web2", key)
	noPushPull(&cfg2)
	web2 := MustOpen(t, cfg2)
	cfg1 := testConfig("web1", key)
	cfg1.Join = []string{ctlAddr, web2.Addr()}
	noPushPull(&cfg1)
	web1 := MustOpen(t, cfg1)
	waitFor(t, "web-1 and web-2 together", func() bool {
		return memberState(web2, "web1") == gossip.StateAlive
	}, web1, web2)

	cfg := testConfig("ctl", key)
	cfg.Bind = ctlAddr
	noPushPull(&cfg)
	ctl := MustOpen(t, cfg)
	waitAll(t, []*gossip.Gossip{ctl, web1, web2}, "all three alive", func(g *gossip.Gossip) bool {
		return countState(g.Members(), gossip.StateAlive) == 3
	})
}

// TestStaleIncarnationRepaired: x comes back and joins only b, which never
// knew its previous life; c still holds x as left with a higher
// incarnation (x updated its metadata many times) and does not retry left
// members. c must notice x's newer alive messages that memberlist ignores,
// and make x refute its old incarnation.
func TestStaleIncarnationRepaired(t *testing.T) {
	t.Parallel()
	key := MustKey(t)
	cfgC := testConfig("c", key)
	noPushPull(&cfgC)
	cfgC.Timing.ReconnectLeft = time.Nanosecond
	cfgC.Timing.GossipToTheDead = time.Hour // memberlist keeps x's old life
	c := MustOpen(t, cfgC)
	cfgX := testConfig("x", key)
	cfgX.Join = []string{c.Addr()}
	noPushPull(&cfgX)
	x := MustOpen(t, cfgX)
	waitFor(t, "c sees x", func() bool { return memberState(c, "x") == gossip.StateAlive }, c)
	meta := cfgX.Meta
	for i := range 20 {
		meta.Seq = uint64(i + 1)
		if err := x.SetMeta(meta); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "c sees x's last update", func() bool {
		m, _ := member(c, "x")
		return m.Meta.Seq == 20
	}, c)
	xAddr := x.Addr()
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	// Left, or dead when a loaded machine delayed x's leave intent: either
	// way c holds x's old incarnation.
	waitFor(t, "c sees x gone", func() bool { return memberState(c, "x") != gossip.StateAlive }, c)

	cfgB := testConfig("b", key)
	cfgB.Join = []string{c.Addr()}
	noPushPull(&cfgB)
	b := MustOpen(t, cfgB)
	waitFor(t, "b and c together", func() bool { return memberState(c, "b") == gossip.StateAlive }, c, b)
	waitIdle(t, b, c)

	cfgX = testConfig("x", key)
	cfgX.Bind, cfgX.Join = xAddr, []string{b.Addr()}
	cfgX.Meta.Seq = 99
	noPushPull(&cfgX)
	x = MustOpen(t, cfgX)
	waitFor(t, "c sees x back with its new metadata", func() bool {
		m, _ := member(c, "x")
		return m.State == gossip.StateAlive && m.Meta.Seq == 99
	}, c, b, x)
}

// TestMembersRemembered: a restarted node lists the members it saw before,
// not alive until gossip finds them, with Since their last-seen time; the
// state file holds name, address, role and last seen.
func TestMembersRemembered(t *testing.T) {
	t.Parallel()
	key := MustKey(t)
	stateFile := filepath.Join(t.TempDir(), "state.json")
	cfgA := testConfig("a", key)
	cfgA.StateFile = stateFile
	a := MustOpen(t, cfgA)
	cfgB := testConfig("b", key)
	cfgB.Join = []string{a.Addr()}
	cfgB.Meta.Role = "controller"
	b := MustOpen(t, cfgB)
	cfgC := testConfig("c", key)
	cfgC.Join = []string{a.Addr()}
	c := MustOpen(t, cfgC)
	waitFor(t, "a sees b and c", func() bool { return countState(a.Members(), gossip.StateAlive) == 3 }, a)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a sees c left", func() bool { return memberState(a, "c") == gossip.StateLeft }, a)
	cLeft, _ := member(a, "c")
	bAddr := b.Addr()
	if err := b.Kill(); err != nil { // b stays away: nothing rejoins it
		t.Fatal(err)
	}
	before := time.Now()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	var file struct {
		Members []struct {
			Name, Addr, State string
			LastSeen          time.Time `json:"last_seen"`
			Meta              gossip.NodeMeta
		}
	}
	raw, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Members) != 2 {
		t.Fatalf("state file members = %+v, want b and c", file.Members)
	}

	cfgA.Bind = "127.0.0.1:0"
	a = MustOpen(t, cfgA)
	mb, okB := member(a, "b")
	mc, okC := member(a, "c")
	switch {
	case !okB || mb.State == gossip.StateAlive || mb.Addr != bAddr || mb.Meta.Role != "controller":
		t.Errorf("restored b = %+v, want not alive at %s with role controller", mb, bAddr)
	case mb.Since.Before(before.Add(-time.Second)):
		t.Errorf("restored b last seen %s, want about when a stopped (%s)", mb.Since, before)
	case !okC || mc.State != gossip.StateLeft || !mc.Since.Equal(cLeft.Since):
		t.Errorf("restored c = %+v, want left since %s", mc, cLeft.Since)
	}
}

// TestRememberedMembersReaped: members last seen longer than Reap ago are
// not restored.
func TestRememberedMembersReaped(t *testing.T) {
	t.Parallel()
	stateFile := filepath.Join(t.TempDir(), "state.json")
	old := time.Now().Add(-48 * time.Hour).UTC().Format(time.RFC3339Nano)
	recent := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano)
	body := `{"clock":3,"registers":{},"members":[` +
		`{"name":"gone","addr":"127.0.0.1:9","state":"alive","last_seen":"` + old + `","meta":{"r":"web","a":""}},` +
		`{"name":"recent","addr":"127.0.0.1:9","state":"dead","last_seen":"` + recent + `","meta":{"r":"web","a":""}}]}`
	if err := os.WriteFile(stateFile, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig("a", MustKey(t))
	cfg.StateFile = stateFile
	a := MustOpen(t, cfg)
	if _, ok := member(a, "gone"); ok {
		t.Error("a member last seen 48h ago was restored (Reap is 24h)")
	}
	if m, ok := member(a, "recent"); !ok || m.State != gossip.StateDead {
		t.Errorf("recent = %+v, %v; want it dead", m, ok)
	}
}

package gossip_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// forgetCluster is a node "a" with a state file, and "b" and "c" joining it
// ("b" with a state file too); c is killed and seen dead by a and b.
type forgetCluster struct {
	key        []byte
	cfgA, cfgB gossip.Config
	cfgC       gossip.Config
	a, b       *gossip.Gossip
	recA, recB *testutil.LogRecorder
}

func newForgetCluster(t *testing.T, opts ...func(*gossip.Config)) *forgetCluster {
	t.Helper()
	dir := t.TempDir()
	f := &forgetCluster{key: MustKey(t), recA: &testutil.LogRecorder{}, recB: &testutil.LogRecorder{}}
	f.cfgA = testConfig("a", f.key)
	f.cfgA.StateFile = filepath.Join(dir, "a.json")
	f.cfgA.Logger = slog.New(f.recA)
	for _, o := range opts {
		o(&f.cfgA)
	}
	f.a = MustOpen(t, f.cfgA)
	f.cfgA.Bind = f.a.Addr() // a restart keeps the address
	f.cfgB = testConfig("b", f.key)
	f.cfgB.Join = []string{f.a.Addr()}
	f.cfgB.StateFile = filepath.Join(dir, "b.json")
	f.cfgB.Logger = slog.New(f.recB)
	f.cfgC = testConfig("c", f.key)
	f.cfgC.Join = []string{f.a.Addr()}
	for _, o := range opts {
		o(&f.cfgB)
		o(&f.cfgC)
	}
	f.b = MustOpen(t, f.cfgB)
	f.cfgB.Bind = f.b.Addr()
	c := MustOpen(t, f.cfgC)
	f.cfgC.Bind = c.Addr()
	nodes := []*gossip.Gossip{f.a, f.b}
	waitAll(t, nodes, "all alive", func(g *gossip.Gossip) bool { return countState(g.Members(), gossip.StateAlive) == 3 })
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	waitAll(t, nodes, "c dead", func(g *gossip.Gossip) bool { return memberState(g, "c") == gossip.StateDead })
	return f
}

// forgetC forgets c on a and waits until b dropped it too.
func (f *forgetCluster) forgetC(t *testing.T) {
	t.Helper()
	if _, err := f.a.Forget("c"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b drops c", func() bool { _, ok := member(f.b, "c"); return !ok }, f.b)
}

// forgottenInFile returns the members named by the forget intents of a
// state file.
func forgottenInFile(t *testing.T, path string) []string {
	t.Helper()
	var file struct {
		Forgotten []struct {
			Node string `json:"n"`
		} `json:"forgotten"`
	}
	raw, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(raw, &file)
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range file.Forgotten {
		names = append(names, f.Node)
	}
	return names
}

// retries counts a's attempts to reconnect to addr alone (it has no join
// list: the missing member is all it retries).
func (f *forgetCluster) retries(addr string) int {
	return f.recA.Lines(slog.LevelDebug, "gossip reconnect failed addrs=["+addr+"]")
}

// TestForget: a member gone for good is dropped by the node asked at once
// and by the others through gossip, each logging it once, and no longer
// retried; an alive member, the node itself and an unknown name are
// refused and change nothing.
func TestForget(t *testing.T) {
	t.Parallel()
	f := newForgetCluster(t, noPushPull) // the forget intent alone carries it
	waitFor(t, "a retries c", func() bool { return f.retries(f.cfgC.Bind) > 0 }, f.a)
	for _, tc := range []struct {
		name string
		want error
	}{
		{"a", gossip.ErrMemberAlive},
		{"b", gossip.ErrMemberAlive},
		{"nobody", gossip.ErrUnknownMember},
	} {
		if _, err := f.a.Forget(tc.name); !errors.Is(err, tc.want) {
			t.Errorf("Forget(%s) = %v, want %v", tc.name, err, tc.want)
		}
	}
	if got := countState(f.b.Members(), gossip.StateAlive); got != 2 || memberState(f.b, "c") != gossip.StateDead {
		t.Fatalf("after refused forgets b sees %+v", f.b.Members())
	}

	m, err := f.a.Forget("c")
	if err != nil || m.Name != "c" || m.State != gossip.StateDead || m.Addr != f.cfgC.Bind {
		t.Fatalf("Forget(c) = %+v, %v; want c as it was listed (dead at %s)", m, err, f.cfgC.Bind)
	}
	if _, ok := member(f.a, "c"); ok {
		t.Error("a still lists c right after forgetting it")
	}
	waitFor(t, "b drops c", func() bool { _, ok := member(f.b, "c"); return !ok }, f.b)
	if n := f.recB.Lines(slog.LevelInfo, "gossip member forgotten"); n != 1 {
		t.Errorf("b logged %d lines about forgetting c, want 1", n)
	}
	if _, err := f.a.Forget("c"); !errors.Is(err, gossip.ErrUnknownMember) {
		t.Errorf("second Forget(c) = %v, want ErrUnknownMember", err)
	}
	if got := countState(f.a.Members(), gossip.StateAlive); got != 2 {
		t.Errorf("a sees %d alive members after the forget, want 2", got)
	}
	// a retried c with probability 1/2 every Reconnect interval; twenty
	// intervals without one say it stopped (a miss by chance: 1 in 10^6).
	retried, since := f.retries(f.cfgC.Bind), time.Now()
	quiet := 20 * gossip.TestTiming().Reconnect
	testutil.Eventually(t, quiet+waitTimeout, func() error {
		if n := f.retries(f.cfgC.Bind); n != retried {
			t.Fatalf("a retried c %d times after forgetting it", n-retried)
		}
		if time.Since(since) < quiet {
			return errors.New("still watching")
		}
		return nil
	})
}

// TestForgetSurvivesRestart: a node restarted after a forget does not list
// the member again from its state file, which keeps the forget intent.
func TestForgetSurvivesRestart(t *testing.T) {
	t.Parallel()
	f := newForgetCluster(t)
	f.forgetC(t)
	if err := f.a.Close(); err != nil {
		t.Fatal(err)
	}
	if names := forgottenInFile(t, f.cfgA.StateFile); len(names) != 1 || names[0] != "c" {
		t.Fatalf("state file forgets %v, want c", names)
	}
	a := MustOpen(t, f.cfgA)
	if _, ok := member(a, "c"); ok {
		t.Fatal("a lists c again after a restart")
	}
	waitFor(t, "a sees b again", func() bool { return memberState(a, "b") == gossip.StateAlive }, a)
	if _, ok := member(a, "c"); ok {
		t.Error("a lists c again after rejoining b")
	}
}

// TestForgetReachesNodeThatWasDown: a node that was stopped during the
// forget, and remembers the member in its state file, drops it at its
// first state exchange after it is back (here its join: periodic push/pull
// is off), once gossip has long stopped sending the intent.
func TestForgetReachesNodeThatWasDown(t *testing.T) {
	t.Parallel()
	f := newForgetCluster(t, noPushPull)
	cfgD := testConfig("d", f.key) // takes the gossip while b is away
	cfgD.Join = []string{f.a.Addr()}
	noPushPull(&cfgD)
	d := MustOpen(t, cfgD)
	if err := f.b.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a sees d", func() bool { return memberState(f.a, "d") == gossip.StateAlive }, f.a)
	if _, err := f.a.Forget("c"); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, f.a, d)
	rec := &testutil.LogRecorder{}
	f.cfgB.Logger = slog.New(rec)
	b := MustOpen(t, f.cfgB)
	waitFor(t, "b back", func() bool { return memberState(b, "a") == gossip.StateAlive }, b)
	waitFor(t, "b drops c", func() bool { _, ok := member(b, "c"); return !ok }, b)
	if n := rec.Lines(slog.LevelInfo, "gossip member forgotten"); n != 1 {
		t.Errorf("b logged %d lines about forgetting c, want 1", n)
	}
}

// TestForgottenMemberBack: a forgotten member that starts again under the
// same name is a member again on every node, and, once it stops, it is
// listed as dead like any other: the forget covered its old life only.
func TestForgottenMemberBack(t *testing.T) {
	t.Parallel()
	f := newForgetCluster(t)
	f.forgetC(t)
	c := MustOpen(t, f.cfgC)
	nodes := []*gossip.Gossip{f.a, f.b}
	waitAll(t, nodes, "c alive again", func(g *gossip.Gossip) bool { return memberState(g, "c") == gossip.StateAlive })
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	waitAll(t, nodes, "c's new life dead", func(g *gossip.Gossip) bool { return memberState(g, "c") == gossip.StateDead })
}

// TestForgetPruned: a forget intent is kept for Timing.Reap after it was
// made, then dropped from the state file.
func TestForgetPruned(t *testing.T) {
	t.Parallel()
	const reap = 3 * time.Second
	f := newForgetCluster(t, func(c *gossip.Config) { c.Timing.Reap = reap })
	made := time.Now()
	if _, err := f.a.Forget("c"); err != nil {
		t.Fatal(err)
	}
	forgotten := func() int { // restarts a
		t.Helper()
		if err := f.a.Close(); err != nil {
			t.Fatal(err)
		}
		n := len(forgottenInFile(t, f.cfgA.StateFile))
		f.a = MustOpen(t, f.cfgA)
		return n
	}
	if n := forgotten(); n != 1 {
		t.Fatalf("state file holds %d forget intents right after the forget, want 1", n)
	}
	// The prune goes by the wall clock: wait for Reap to be over, then the
	// running node's next write must leave the intent out.
	testutil.Eventually(t, reap+waitTimeout, func() error {
		if since := time.Since(made); since <= reap {
			return fmt.Errorf("only %s since the forget", since)
		}
		return nil
	})
	if n := forgotten(); n != 0 {
		t.Fatalf("state file holds %d forget intents %s after the forget, want 0", n, time.Since(made).Round(time.Millisecond))
	}
}

// TestForgetInStateFile: at start, a member of the state file that a
// forget intent of the same file covers is not listed: one last seen
// before the forget, or of its metadata version or an older one. A later
// life is, and so is a member whose forget intent was made too far in the
// future (a clock far ahead): that intent is dropped.
func TestForgetInStateFile(t *testing.T) {
	t.Parallel()
	at := time.Now().Add(-time.Hour)
	ts := func(d time.Duration) string { return at.Add(d).UTC().Format(time.RFC3339Nano) }
	for _, tc := range []struct {
		name     string
		lastSeen string
		version  int64
		forgetAt string
		listed   bool
	}{
		{"seen before the forget, newer version", ts(-time.Minute), 900, ts(0), false},
		{"seen after the forget, same version", ts(time.Minute), 500, ts(0), false},
		{"later life", ts(time.Minute), 900, ts(0), true},
		{"forget made in the future", ts(time.Minute), 500, ts(2 * time.Hour), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stateFile := filepath.Join(t.TempDir(), "state.json")
			body := fmt.Sprintf(`{"clock":3,"registers":{},"members":[`+
				`{"name":"c","addr":"127.0.0.1:9","state":"dead","last_seen":%q,"meta":{"r":"web","a":""},"version":%d}],`+
				`"forgotten":[{"n":"c","c":2,"v":500,"t":%q,"b":"a"}]}`, tc.lastSeen, tc.version, tc.forgetAt)
			if err := os.WriteFile(stateFile, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := testConfig("a", MustKey(t))
			cfg.StateFile = stateFile
			a := MustOpen(t, cfg)
			if _, ok := member(a, "c"); ok != tc.listed {
				t.Errorf("c listed = %v, want %v", ok, tc.listed)
			}
		})
	}
}

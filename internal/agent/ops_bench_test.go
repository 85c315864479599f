package agent_test

// Benchmarks of cluster-wide operations on 50 agents (1 controller + 49 web
// nodes) in one process, real memberlist on 127.0.0.1, with the default LAN
// gossip timing (zero Options.GossipTiming: probe 1s, gossip 200ms fanout 3,
// push/pull 30s, scaled to 60s above 32 nodes). Rerun with:
//
//	go test -run '^$' -bench 'Toggle50|Announce50' -benchtime 20x -timeout 30m ./internal/agent/
//
// Every iteration is one operation, and the next one starts as soon as the
// previous one's barrier is reached, as in a deploy. Each stage reports, as
// custom metrics, the distribution over the iterations of the time until
// the last of the 50 agents got there (nearest rank: with 20 iterations p99
// is the maximum); the log adds every value, the slowest node and the
// median agent:
//
//   - BenchmarkMaintenanceToggle50: the controller flips maintenance.
//     received: every agent's gossip register holds the new clock;
//     applied: every agent reports Status().Maintenance.Applied with that
//     clock and state (its watch loop applied it: what "applied on that
//     node" means); advertised: every agent's own gossip metadata carries
//     the clock; barrier: the controller sees that clock in every web node's
//     metadata (what `deploy -maintenance` waits for).
//   - BenchmarkTargetAnnounce50: the controller publishes a 1-file change
//     (a source tree of two tiny files). received: every agent's target
//     register names the new revision; announced: every agent's
//     Status().Revision.Target does (the watch loop handed it to the
//     syncer); synced: every web node applied it; barrier: the controller
//     sees it in every web node's metadata.
//
// Also reported: the CPU the process used per operation and the failure
// detector's events (suspicions, members marked failed), which explain
// slow gossip on a loaded machine. 50 agents share one heap here, so one
// agent's debug.FreeOSMemory after a sync collects for all of them.
//
// Flags (after the package): -ops.webs N (default 49), -ops.timing lan|test
// (test: gossip.TestTiming; at 50 agents it needs more than the 2 cores of
// the reference machine and the failure detector flaps) and -ops.gap D (a
// pause before each operation, outside the timing). Agents are polled every
// 2ms.

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/agent"
	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

var (
	opsWebs   = flag.Int("ops.webs", 49, "web agents of the ops benchmarks (plus one controller)")
	opsTiming = flag.String("ops.timing", "lan", "gossip timing of the ops benchmarks: lan (the default of a real agent) or test")
	opsGap    = flag.Duration("ops.gap", 0, "pause between two operations of the ops benchmarks (0: the next starts at the previous barrier)")
)

// opsPoll is how often the benchmarks look at the agents.
const opsPoll = 2 * time.Millisecond

// opsCluster is a controller and many web agents in one process.
type opsCluster struct {
	dir, source string
	ctl         *agent.Agent
	all         []*agent.Agent // the controller first
	published   int
	events      *eventCounter
}

func newOpsCluster(b *testing.B) *opsCluster {
	b.Helper()
	var timing gossip.Timing
	switch *opsTiming {
	case "lan":
	case "test":
		timing = gossip.TestTiming()
	default:
		b.Fatalf("-ops.timing %q: want lan or test", *opsTiming)
	}
	dir := b.TempDir()
	c := &opsCluster{dir: dir, source: filepath.Join(dir, "source"), events: newEventCounter()}
	c.writeSource(b, "index.php", "<?php echo 0;")
	c.writeSource(b, "version.php", "<?php $version = 0;")
	b.Cleanup(c.close)

	c.ctl = c.open(b, c.config("controller", config.RoleController), timing)
	c.publish(b)
	for i := 1; i <= *opsWebs; i++ {
		c.open(b, c.config(fmt.Sprintf("web-%02d", i), config.RoleWeb), timing)
	}
	start := time.Now()
	c.waitFor(b, 3*time.Minute, "every agent sees every member alive and every web node in sync", c.settled)
	b.Logf("%d agents (gossip timing %s) settled %.1fs after the last one opened; failure detector: %v",
		len(c.all), *opsTiming, time.Since(start).Seconds(), c.events.take())
	return c
}

func (c *opsCluster) config(node, role string) *config.Config {
	cfg := config.Default()
	cfg.Node, cfg.Role = node, role
	cfg.DataDir = filepath.Join(c.dir, node, "data")
	cfg.Gossip.Bind = "127.0.0.1:0"
	cfg.Cluster.Listen = "127.0.0.1:0"
	cfg.API.Listen = "127.0.0.1:0"
	cfg.Mirror.Keep = 2
	if role == config.RoleController {
		cfg.Mirror.Source, cfg.Deploy.RunAs = c.source, testUser
	} else {
		cfg.Gossip.Join = []string{c.ctl.GossipAddr()}
		cfg.Mirror.Target = filepath.Join(c.dir, node, "www", "moodle")
	}
	return cfg
}

func (c *opsCluster) open(b *testing.B, cfg *config.Config, timing gossip.Timing) *agent.Agent {
	b.Helper()
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	a := agent.New(cfg, agent.Options{Key: testKey, Token: testToken, GossipTiming: timing, Logger: slog.New(c.events)})
	if err := a.Open(context.Background()); err != nil {
		b.Fatalf("open %s: %v", cfg.Node, err)
	}
	c.all = append(c.all, a)
	return a
}

// close stops every agent at once: each graceful leave waits for its
// broadcast, so closing one after the other would take minutes.
func (c *opsCluster) close() {
	var wg sync.WaitGroup
	for _, a := range c.all {
		wg.Add(1)
		go func() { defer wg.Done(); a.Close() }()
	}
	wg.Wait()
}

func (c *opsCluster) writeSource(b *testing.B, name, body string) {
	b.Helper()
	p := filepath.Join(c.source, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		b.Fatal(err)
	}
}

// publish changes one file and publishes it; it returns the new revision id.
func (c *opsCluster) publish(b *testing.B) string {
	b.Helper()
	c.published++
	c.writeSource(b, "version.php", fmt.Sprintf("<?php $version = %d;", c.published))
	rev, created, err := c.ctl.Publish(context.Background(), fmt.Sprintf("change %d", c.published))
	if err != nil || !created {
		b.Fatalf("publish %d: created %v, %v", c.published, created, err)
	}
	return rev.ID
}

// settled reports what is still missing for a quiet cluster.
func (c *opsCluster) settled() error {
	for _, a := range c.all {
		alive := 0
		for _, m := range a.Members() {
			if m.State == gossip.StateAlive {
				alive++
			}
		}
		if alive != len(c.all) {
			return fmt.Errorf("%s sees %d of %d members alive", a.Status().Node, alive, len(c.all))
		}
		if st := a.Status(); st.Role == config.RoleWeb && !st.Revision.InSync {
			return fmt.Errorf("%s is not in sync", st.Node)
		}
	}
	return nil
}

func (c *opsCluster) waitFor(b *testing.B, timeout time.Duration, what string, f func() error) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: not after %s: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stage is one condition every agent must reach, in order: an agent is
// checked for a stage only once it reached the previous ones.
type stage struct {
	name string
	done func(*agent.Agent) bool
}

// arrival is when the last agent reached a stage, which one it was, and
// when the median agent did.
type arrival struct {
	last time.Duration
	node string
	mid  time.Duration
}

// track polls every agent through the stages until all of them reached the
// last one, and returns per stage when the last agent got there, from
// start; an error after timeout.
func (c *opsCluster) track(start time.Time, timeout time.Duration, stages ...stage) ([]arrival, error) {
	next := make([]int, len(c.all)) // per agent: the first stage not reached
	out := make([]arrival, len(stages))
	times := make([][]time.Duration, len(stages))
	for {
		now := time.Now()
		pending := 0
		for i, a := range c.all {
			for next[i] < len(stages) && stages[next[i]].done(a) {
				out[next[i]] = arrival{last: now.Sub(start), node: a.Status().Node}
				times[next[i]] = append(times[next[i]], now.Sub(start))
				next[i]++
			}
			if next[i] < len(stages) {
				pending++
			}
		}
		if pending == 0 {
			// A stage's last arrival can precede an earlier stage's.
			for k := range out {
				if k > 0 {
					out[k].last = max(out[k].last, out[k-1].last)
				}
				slices.Sort(times[k])
				out[k].mid = times[k][len(times[k])/2]
			}
			return out, nil
		}
		if now.Sub(start) > timeout {
			return nil, fmt.Errorf("%d agents not through %q after %s", pending, stages[len(stages)-1].name, timeout)
		}
		time.Sleep(opsPoll)
	}
}

// barrier polls the controller's gossip view until every web node's
// metadata satisfies ok and returns when, from start.
func (c *opsCluster) barrier(b *testing.B, start time.Time, timeout time.Duration, what string, ok func(gossip.NodeMeta) bool) arrival {
	b.Helper()
	var last string
	for {
		now := time.Now()
		waiting, webs := 0, 0
		for _, m := range c.ctl.Members() {
			if m.Meta.Role == config.RoleWeb {
				webs++
				if m.State != gossip.StateAlive || !ok(m.Meta) {
					waiting++
					last = m.Name
				}
			}
		}
		if waiting == 0 && webs == len(c.all)-1 {
			return arrival{last: now.Sub(start), node: last}
		}
		if now.Sub(start) > timeout {
			b.Fatalf("%s: %d web nodes not after %s", what, waiting, timeout)
		}
		time.Sleep(opsPoll)
	}
}

// eventCounter is an slog handler counting the failure-detector events of
// every agent: suspicion, refutation, members marked failed. They explain
// slow gossip on a loaded machine.
type eventCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

// counted are substrings of memberlist and gossip log messages.
var counted = []string{"Suspect", "Refuting", "Marking", "member dead", "member alive", "timeout waiting"}

func newEventCounter() *eventCounter { return &eventCounter{counts: map[string]int{}} }

func (e *eventCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (e *eventCounter) WithAttrs([]slog.Attr) slog.Handler           { return e }
func (e *eventCounter) WithGroup(string) slog.Handler                { return e }

func (e *eventCounter) Handle(_ context.Context, r slog.Record) error {
	for _, s := range counted {
		if strings.Contains(r.Message, s) {
			e.mu.Lock()
			e.counts[s]++
			e.mu.Unlock()
		}
	}
	return nil
}

// take returns the counts since the last take and resets them.
func (e *eventCounter) take() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.counts
	e.counts = map[string]int{}
	return c
}

// cpuTime is the CPU time (user+system) of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs the benchmark loop body through b.Loop and reports, besides
// the latencies, the CPU the process used per operation and the failure
// detector's events during the loop.
func (c *opsCluster) measure(b *testing.B, op func(i int)) {
	c.events.take()
	cpu0, wall0 := cpuTime(), time.Now()
	n := 0
	for ; b.Loop(); n++ {
		c.gap(b)
		op(n)
	}
	cpu, wall := cpuTime()-cpu0, time.Since(wall0)
	b.ReportMetric(cpu.Seconds()/float64(n), "cpu-s/op")
	b.Logf("%d agents: %.1f CPU-s in %.1fs of wall time (%.2f cores); failure detector: %v",
		len(c.all), cpu.Seconds(), wall.Seconds(), cpu.Seconds()/wall.Seconds(), c.events.take())
}

// gap pauses -ops.gap, outside the timed part.
func (c *opsCluster) gap(b *testing.B) {
	if *opsGap > 0 {
		b.StopTimer()
		time.Sleep(*opsGap)
		b.StartTimer()
	}
}

// selfMeta is the metadata memberlist carries for the agent itself: what it
// advertises to the others.
func selfMeta(a *agent.Agent) gossip.NodeMeta {
	name := a.Status().Node
	for _, m := range a.Members() {
		if m.Name == name {
			return m.Meta
		}
	}
	return gossip.NodeMeta{}
}

// latencies collects one arrival per iteration under a name.
type latencies map[string][]arrival

func (l latencies) add1(name string, a arrival) { l[name] = append(l[name], a) }

func (l latencies) add(arr []arrival, names ...string) {
	for i, name := range names {
		l.add1(name, arr[i])
	}
}

// report sets p50, p99 and max of every name as metrics and logs every
// value, with the node that arrived last in the slowest iteration.
func (l latencies) report(b *testing.B, order ...string) {
	for _, name := range order {
		if len(l[name]) == 0 {
			continue
		}
		var d, mids []time.Duration
		worst := l[name][0]
		for _, a := range l[name] {
			d = append(d, a.last.Round(time.Millisecond))
			mids = append(mids, a.mid.Round(time.Millisecond))
			if a.last > worst.last {
				worst = a
			}
		}
		all := slices.Clone(d)
		slices.Sort(d)
		p50, p99, top := d[rank(len(d), 0.50)], d[rank(len(d), 0.99)], d[len(d)-1]
		b.ReportMetric(ms(p50), name+"-p50-ms")
		b.ReportMetric(ms(p99), name+"-p99-ms")
		b.ReportMetric(ms(top), name+"-max-ms")
		b.Logf("%s over %d: p50 %.0fms p99 %.0fms max %.0fms (last: %s); all: %v", name, len(d), ms(p50), ms(p99), ms(top), worst.node, all)
		if l[name][0].mid > 0 {
			b.Logf("%s, median agent: %v", name, mids)
		}
	}
}

// rank is the nearest-rank index of quantile q among n sorted values.
func rank(n int, q float64) int { return max(int(math.Ceil(q*float64(n)))-1, 0) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func BenchmarkMaintenanceToggle50(b *testing.B) {
	c := newOpsCluster(b)
	lat := latencies{}
	c.measure(b, func(i int) {
		want := i%2 == 0
		start := time.Now()
		m, err := c.ctl.SetMaintenance(api.MaintenanceRequest{Enabled: want, Message: "benchmark"})
		if err != nil {
			b.Fatal(err)
		}
		arr, err := c.track(start, time.Minute,
			stage{"received", func(a *agent.Agent) bool { return a.Maintenance().Clock >= m.Clock }},
			stage{"applied", func(a *agent.Agent) bool {
				st := a.Status().Maintenance
				return st.Applied && st.Clock == m.Clock && st.Active == want
			}},
			stage{"advertised", func(a *agent.Agent) bool { return selfMeta(a).Maint == m.Clock }})
		if err != nil {
			b.Fatal(err)
		}
		lat.add(arr, "received", "applied", "advertised")
		lat.add1("barrier", c.barrier(b, start, time.Minute, "maintenance barrier", func(n gossip.NodeMeta) bool {
			return n.Maint == m.Clock && n.MaintOn == want
		}))
	})
	lat.report(b, "received", "applied", "advertised", "barrier")
}

func BenchmarkTargetAnnounce50(b *testing.B) {
	c := newOpsCluster(b)
	lat := latencies{}
	old := c.ctl.Status().Revision.Target.ID
	c.measure(b, func(int) {
		// Track "the target is no longer old" while Publish runs: it
		// returns only after its own metadata update went out.
		start := time.Now()
		var arr []arrival
		var trackErr error
		var mu sync.Mutex
		seen := map[string]string{} // node -> target seen by its watch loop
		done := make(chan struct{})
		go func() {
			defer close(done)
			arr, trackErr = c.track(start, time.Minute,
				stage{"received", func(a *agent.Agent) bool {
					t := a.Revisions().Target
					return t != nil && t.ID != old
				}},
				stage{"announced", func(a *agent.Agent) bool {
					st := a.Status()
					if t := st.Revision.Target; t != nil && t.ID != old {
						mu.Lock()
						seen[st.Node] = t.ID
						mu.Unlock()
						return true
					}
					return false
				}})
		}()
		id := c.publish(b)
		published := time.Since(start)
		<-done
		if trackErr != nil {
			b.Fatal(trackErr)
		}
		for node, got := range seen {
			if got != id {
				b.Fatalf("%s: target %s, published %s", node, got, id)
			}
		}
		lat.add1("publish", arrival{last: published})
		lat.add(arr, "received", "announced")
		synced, err := c.track(start, time.Minute, stage{"synced", func(a *agent.Agent) bool {
			r := a.Status().Revision
			return r.Applied != nil && r.Applied.ID == id
		}})
		if err != nil {
			b.Fatal(err)
		}
		lat.add(synced, "synced")
		lat.add1("barrier", c.barrier(b, start, time.Minute, "revision barrier", func(n gossip.NodeMeta) bool {
			return n.Rev == id
		}))
		old = id
	})
	lat.report(b, "publish", "received", "announced", "synced", "barrier")
}

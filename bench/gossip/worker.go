package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	metrics "github.com/hashicorp/go-metrics"

	"github.com/nodeagent/nodeagent/internal/gossip"
)

// worker hosts gossip nodes (real memberlist, UDP and TCP on 127.0.0.1,
// the agent's LAN timing) and behaves like their agents: a web node that
// sees a new maintenance or target register advertises, in its metadata,
// that it applied it (a real web node syncs first; the benchmark measures
// gossip, not syncs).
type worker struct {
	out  *lineWriter
	sink *countSink

	mu      sync.Mutex
	spec    openSpec
	nodes   map[string]*node
	watches map[int64]*watchState
	wg      sync.WaitGroup
}

type node struct {
	name string
	g    *gossip.Gossip
	poke chan struct{}
	stop chan struct{} // closed by closeAll
}

// watchState is a watch being evaluated on the worker's nodes.
type watchState struct {
	id    int64
	spec  watchSpec
	times map[string]int64
	sent  bool
	timer *time.Timer // sends the reply at the deadline
}

// runWorker serves the driver's requests on stdin until it closes or a
// signal arrives; then it closes its nodes (a graceful leave, as an agent
// on SIGINT does).
func runWorker(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	w := &worker{out: newLineWriter(stdout), sink: newCountSink(), nodes: map[string]*node{}, watches: map[int64]*watchState{}}
	cfg := metrics.DefaultConfig("")
	cfg.EnableHostname, cfg.EnableRuntimeMetrics = false, false
	if _, err := metrics.NewGlobal(cfg, w.sink); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	reqs := make(chan request)
	go func() {
		defer close(reqs)
		_ = readLines(stdin, func(r request) { reqs <- r })
	}()
	defer w.closeAll()
	for {
		select {
		case <-ctx.Done():
			return nil
		case r, ok := <-reqs:
			if !ok || r.Op == "close" {
				return nil
			}
			w.handle(ctx, r)
		}
	}
}

func (w *worker) handle(ctx context.Context, r request) {
	rep := reply{ID: r.ID}
	var err error
	switch r.Op {
	case "open":
		rep.Addrs, err = w.open(ctx, *r.Open, r.Seed)
	case "set":
		rep.At, err = w.set(r.Node, r.Key, r.Value)
	case "bump":
		rep.At, err = w.bump(r.Node, r.Value)
	case "watch":
		w.watch(r.ID, *r.Watch)
		return // answered when done
	case "traffic":
		rep.Traffic = w.sink.snapshot(len(w.nodes))
	default:
		err = fmt.Errorf("unknown op %q", r.Op)
	}
	if err != nil {
		rep.Err = err.Error()
	}
	_ = w.out.write(rep)
}

// open starts the nodes, a few at a time so that 2 cores are not swamped
// by joins, each joining seed.
func (w *worker) open(ctx context.Context, spec openSpec, seed []string) (map[string]string, error) {
	w.mu.Lock()
	w.spec = spec
	w.mu.Unlock()
	addrs := map[string]string{}
	for _, name := range spec.Names {
		g := gossip.New(w.config(spec, name, seed))
		if err := g.Open(ctx); err != nil {
			return nil, fmt.Errorf("open %s: %w", name, err)
		}
		n := &node{name: name, g: g, poke: make(chan struct{}, 1), stop: make(chan struct{})}
		w.mu.Lock()
		w.nodes[name] = n
		w.mu.Unlock()
		w.wg.Add(1)
		go func() { defer w.wg.Done(); w.runNode(n) }()
		addrs[name] = g.Addr()
		time.Sleep(5 * time.Millisecond) // pacing, not waiting for state
	}
	return addrs, nil
}

func (w *worker) config(spec openSpec, name string, seed []string) gossip.Config {
	role := "web"
	if name == spec.Controller {
		role, seed = "controller", nil // like a controller: no join list
	}
	bind := "127.0.0.1:0"
	if a := spec.Binds[name]; a != "" {
		bind = a
	}
	return gossip.Config{
		Name:        name,
		Bind:        bind,
		Join:        seed,
		Key:         spec.Key,
		Meta:        startMeta(role, spec.Life),
		StateFile:   filepath.Join(spec.Dir, name+".json"),
		Timing:      gossip.Timing{RetransmitMult: spec.Retransmit, GossipInterval: spec.GossipInterval, GossipNodes: spec.GossipNodes},
		Logger:      workerLogger(name),
		StockQueues: spec.Stock,
	}
}

// workerLogger logs to the worker's stderr (its log file in the work dir)
// with BENCH_GOSSIP_LOG=debug or info; nothing otherwise.
func workerLogger(node string) *slog.Logger {
	var level slog.Level
	if level.UnmarshalText([]byte(os.Getenv("BENCH_GOSSIP_LOG"))) != nil || os.Getenv("BENCH_GOSSIP_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("node", node)
}

// startMeta is metadata of a realistic size: an agent's.
func startMeta(role, life string) gossip.NodeMeta {
	return gossip.NodeMeta{
		Role: role, API: "127.0.0.1:7947", Seq: 0, Rev: revID(0), Ready: true,
		Version: life, CertExpiry: 1800000000,
	}
}

func revID(seq int64) string { return fmt.Sprintf("%064x", seq) }

// runNode reacts to the node's cluster changes and evaluates the watches.
func (w *worker) runNode(n *node) {
	ch, cancel := n.g.Changes()
	defer cancel()
	for {
		if n.name != w.controller() {
			react(n.g)
		}
		w.evaluate(n)
		select {
		case <-n.stop:
			return
		case <-ch:
		case <-n.poke:
		}
	}
}

func (w *worker) controller() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.spec.Controller
}

// react is a web agent's reaction: advertise the maintenance and target it
// applies.
func react(g *gossip.Gossip) {
	m := g.Meta()
	changed := false
	if v, ok := registerValue(g, "maintenance"); ok && v > int64(m.Maint) {
		m.Maint, m.MaintOn, changed = uint64(v), v%2 == 1, true
	}
	if v, ok := registerValue(g, "target"); ok && v > int64(m.Seq) {
		m.Seq, m.Rev, changed = uint64(v), revID(v), true
	}
	if changed {
		_ = g.SetMeta(m) // only ErrClosed: the node is going away
	}
}

func registerValue(g *gossip.Gossip, key string) (int64, bool) {
	r, ok := g.Get(key)
	if !ok {
		return 0, false
	}
	var v struct{ V int64 }
	if json.Unmarshal(r.Value, &v) != nil {
		return 0, false
	}
	return v.V, true
}

func (w *worker) set(name, key string, v int64) (int64, error) {
	n, err := w.node(name)
	if err != nil {
		return 0, err
	}
	at := time.Now().UnixNano()
	_, err = n.g.Set(key, map[string]int64{"v": v})
	return at, err
}

// bump changes node's metadata marker (CertExpiry) to v: one metadata
// change, as an agent's after a sync or a drain.
func (w *worker) bump(name string, v int64) (int64, error) {
	n, err := w.node(name)
	if err != nil {
		return 0, err
	}
	m := n.g.Meta()
	m.CertExpiry = v
	at := time.Now().UnixNano()
	return at, n.g.SetMeta(m)
}

func (w *worker) node(name string) (*node, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, ok := w.nodes[name]
	if !ok {
		return nil, fmt.Errorf("no node %s here", name)
	}
	return n, nil
}

// watch starts evaluating spec on every node; the reply goes out when all
// held it, or at the deadline with those that did.
func (w *worker) watch(id int64, spec watchSpec) {
	w.mu.Lock()
	ws := &watchState{id: id, spec: spec, times: map[string]int64{}}
	ws.timer = time.AfterFunc(time.Until(time.Unix(0, spec.Deadline)), func() { w.finish(ws) })
	w.watches[id] = ws
	nodes := make([]*node, 0, len(w.nodes))
	for _, n := range w.nodes {
		nodes = append(nodes, n)
	}
	w.mu.Unlock()
	for _, n := range nodes {
		select {
		case n.poke <- struct{}{}:
		default:
		}
	}
}

// evaluate records, for each open watch, when n first meets it.
func (w *worker) evaluate(n *node) {
	var members []gossip.Member // read only when a watch needs them
	if w.needsMembers(n.name) {
		members = n.g.Members()
	}
	var done []*watchState
	w.mu.Lock()
	for _, ws := range w.watches {
		if _, ok := ws.times[n.name]; ok || ws.sent {
			continue
		}
		if holds(ws.spec, n, w.spec.Controller, members) {
			ws.times[n.name] = time.Now().UnixNano()
			if len(ws.times) == len(w.nodes) {
				done = append(done, ws)
			}
		}
	}
	w.mu.Unlock()
	for _, ws := range done {
		w.finish(ws)
	}
}

// needsMembers reports whether an open watch that node has not met yet
// needs its member list.
func (w *worker) needsMembers(node string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ws := range w.watches {
		if _, ok := ws.times[node]; !ok && ws.spec.needsMembers() {
			return true
		}
	}
	return false
}

// finish sends a watch's reply once.
func (w *worker) finish(ws *watchState) {
	w.mu.Lock()
	if ws.sent {
		w.mu.Unlock()
		return
	}
	ws.sent = true
	ws.timer.Stop()
	delete(w.watches, ws.id)
	times := make(map[string]int64, len(ws.times))
	for k, v := range ws.times {
		times[k] = v
	}
	w.mu.Unlock()
	_ = w.out.write(reply{ID: ws.id, Times: times})
}

func (s watchSpec) needsMembers() bool {
	return s.Kind == "barrier" || s.Kind == "meta" || s.Kind == "whole"
}

// holds evaluates a watch on one node.
func holds(s watchSpec, n *node, controller string, members []gossip.Member) bool {
	switch s.Kind {
	case "register":
		v, ok := registerValue(n.g, s.Key)
		return ok && v >= s.Value
	case "applied":
		return n.name == controller || field(n.g.Meta(), s.Key) >= s.Value
	case "barrier":
		if n.name != controller {
			return true
		}
		webs := 0
		for _, m := range members {
			if m.Meta.Role == "web" && m.State == gossip.StateAlive && field(m.Meta, s.Key) >= s.Value {
				webs++
			}
		}
		return webs == s.Count
	case "meta":
		if n.name == s.Member {
			return true
		}
		for _, m := range members {
			if m.Name == s.Member {
				return m.State == gossip.StateAlive && m.Meta.CertExpiry >= s.Value
			}
		}
		return false
	case "whole":
		alive, back := 0, n.name == s.Member
		for _, m := range members {
			if m.State == gossip.StateAlive {
				alive++
				back = back || m.Name == s.Member && m.Meta.Version == s.Life
			}
		}
		return alive == s.Count && back
	}
	return false
}

func field(m gossip.NodeMeta, key string) int64 {
	if key == "seq" {
		return int64(m.Seq)
	}
	return int64(m.Maint)
}

// closeAll closes every node at once (each graceful leave waits for its
// broadcast) and waits for the node loops.
func (w *worker) closeAll() {
	w.mu.Lock()
	nodes := make([]*node, 0, len(w.nodes))
	for _, n := range w.nodes {
		nodes = append(nodes, n)
	}
	for _, ws := range w.watches {
		ws.sent = true // nobody reads replies any more
		ws.timer.Stop()
	}
	w.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range nodes {
		close(n.stop)
		wg.Go(func() { _ = n.g.Close() })
	}
	wg.Wait()
	w.wg.Wait()
}

// countSink is a go-metrics sink that keeps the counters memberlist
// increments for its network traffic: per key, the number of increments
// (packets, connections) and their sum (bytes).
type countSink struct {
	mu     sync.Mutex
	counts map[string]float64
	sums   map[string]float64
}

var _ metrics.MetricSink = (*countSink)(nil)

func newCountSink() *countSink {
	return &countSink{counts: map[string]float64{}, sums: map[string]float64{}}
}

func (s *countSink) IncrCounter(key []string, val float32) {
	k := strings.Join(key, ".")
	s.mu.Lock()
	s.counts[k]++
	s.sums[k] += float64(val)
	s.mu.Unlock()
}

func (s *countSink) IncrCounterWithLabels(key []string, val float32, _ []metrics.Label) {
	s.IncrCounter(key, val)
}
func (s *countSink) SetGauge([]string, float32)                             {}
func (s *countSink) SetGaugeWithLabels([]string, float32, []metrics.Label)  {}
func (s *countSink) EmitKey([]string, float32)                              {}
func (s *countSink) AddSample([]string, float32)                            {}
func (s *countSink) AddSampleWithLabels([]string, float32, []metrics.Label) {}

func (s *countSink) snapshot(nodes int) *traffic {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &traffic{
		Nodes:    nodes,
		UDPSent:  s.counts["memberlist.udp.sent"],
		UDPSentB: s.sums["memberlist.udp.sent"],
		UDPRecv:  s.counts["memberlist.udp.received"],
		UDPRecvB: s.sums["memberlist.udp.received"],
		TCPSentB: s.sums["memberlist.tcp.sent"],
		TCPConns: s.counts["memberlist.tcp.connect"] + s.counts["memberlist.tcp.accept"],
		Sampled:  time.Now().UnixNano(),
	}
}

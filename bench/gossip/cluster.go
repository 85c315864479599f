package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nodeagent/nodeagent/bench/internal/benchenv"
)

// cluster is the driver's side: the worker processes and the nodes they
// host. The controller runs alone in the first worker and one web node,
// the one that is restarted, alone in the second, so that a restart is a
// real process exit (SIGINT: graceful leave; SIGKILL: none); the other web
// nodes share the remaining workers.
type cluster struct {
	bin, dir string
	key      []byte
	stock    bool
	names    []string // names[0] is the controller, names[1] the restarted web node
	addrs    map[string]string
	owner    map[string]*workerProc
	workers  []*workerProc
	lives    map[string]int
	tuning   options // gossip interval and nodes
	ids      atomic.Int64
}

const (
	controllerName = "controller"
	restartedName  = "web-000"
)

// workerProc is one worker process and its pending requests.
type workerProc struct {
	cmd   *exec.Cmd
	out   *lineWriter
	stdin io.Closer
	spec  openSpec
	done  chan struct{} // its replies are all read

	mu      sync.Mutex
	pending map[int64]chan reply
}

// newCluster starts n nodes (a controller and n-1 web nodes) over
// 2+procs worker processes and waits until every node sees all alive.
func newCluster(ctx context.Context, bin, dir string, n int, o options, stock bool) (*cluster, error) {
	procs := o.procs
	c := &cluster{bin: bin, dir: dir, key: make([]byte, 32), stock: stock, tuning: o,
		addrs: map[string]string{}, owner: map[string]*workerProc{}, lives: map[string]int{}}
	for i := range c.key {
		c.key[i] = 0x5a
	}
	c.names = append(c.names, controllerName)
	for i := range n - 1 {
		c.names = append(c.names, fmt.Sprintf("web-%03d", i))
	}
	groups := [][]string{{controllerName}, {restartedName}}
	rest := c.names[2:]
	for p := range procs {
		lo, hi := p*len(rest)/procs, (p+1)*len(rest)/procs
		if lo < hi {
			groups = append(groups, rest[lo:hi])
		}
	}
	for _, g := range groups { // the controller first: the others join it
		if err := c.startWorker(ctx, g); err != nil {
			c.close()
			return nil, err
		}
	}
	if err := c.waitWhole(ctx, controllerName, 3*time.Minute); err != nil {
		c.close()
		return nil, fmt.Errorf("form the cluster: %w", err)
	}
	return c, nil
}

// startWorker starts a worker process for names and opens them.
func (c *cluster) startWorker(ctx context.Context, names []string) error {
	logf, err := os.OpenFile(filepath.Join(c.dir, "worker-"+names[0]+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(c.bin, "worker")
	cmd.Stderr = logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	w := &workerProc{cmd: cmd, out: newLineWriter(stdin), stdin: stdin, done: make(chan struct{}), pending: map[int64]chan reply{}}
	go func() {
		defer close(w.done)
		_ = readLines(stdout, w.deliver)
	}()
	w.spec = openSpec{Names: names, Controller: controllerName, Key: c.key, Dir: c.dir, Stock: c.stock, Binds: map[string]string{}}
	if c.stock {
		w.spec.Retransmit = 4 // memberlist's default
	}
	w.spec.GossipInterval, w.spec.GossipNodes = c.tuning.gossipInterval, c.tuning.gossipNodes
	for _, name := range names {
		c.lives[name]++
		w.spec.Life = fmt.Sprintf("life-%d", c.lives[name])
		if a := c.addrs[name]; a != "" {
			w.spec.Binds[name] = a
		}
	}
	var seed []string
	if a := c.addrs[controllerName]; a != "" && names[0] != controllerName {
		seed = []string{a}
	}
	rep, err := c.call(ctx, w, request{Op: "open", Open: &w.spec, Seed: seed})
	if err != nil {
		c.stopWorker(w, syscall.SIGKILL)
		return err
	}
	maps.Copy(c.addrs, rep.Addrs)
	for _, name := range names {
		c.owner[name] = w
	}
	c.workers = append(c.workers, w)
	return nil
}

func (w *workerProc) deliver(r reply) {
	w.mu.Lock()
	ch := w.pending[r.ID]
	delete(w.pending, r.ID)
	w.mu.Unlock()
	if ch != nil {
		ch <- r
	}
}

// send sends req to w and returns the channel its reply comes on.
func (c *cluster) send(w *workerProc, req request) (<-chan reply, error) {
	req.ID = c.ids.Add(1)
	ch := make(chan reply, 1)
	w.mu.Lock()
	w.pending[req.ID] = ch
	w.mu.Unlock()
	if err := w.out.write(req); err != nil {
		return nil, err
	}
	return ch, nil
}

// call sends req and waits for its reply.
func (c *cluster) call(ctx context.Context, w *workerProc, req request) (reply, error) {
	ch, err := c.send(w, req)
	if err != nil {
		return reply{}, err
	}
	return c.await(ctx, w, ch)
}

func (c *cluster) await(ctx context.Context, w *workerProc, ch <-chan reply) (reply, error) {
	select {
	case <-ctx.Done():
		return reply{}, ctx.Err()
	case <-w.done:
		return reply{}, errors.New("worker exited (see its log in the work dir)")
	case r := <-ch:
		if r.Err != "" {
			return r, errors.New(r.Err)
		}
		return r, nil
	}
}

// on calls req on the worker hosting node.
func (c *cluster) on(ctx context.Context, node string, req request) (reply, error) {
	req.Node = node
	return c.call(ctx, c.owner[node], req)
}

// watches is a watch sent to a set of workers.
type watches struct {
	spec watchSpec
	sent map[*workerProc]<-chan reply
}

// watch starts spec on every worker but those in skip.
func (c *cluster) watch(spec watchSpec, timeout time.Duration, skip ...*workerProc) (*watches, error) {
	spec.Deadline = time.Now().Add(timeout).UnixNano()
	ws := &watches{spec: spec, sent: map[*workerProc]<-chan reply{}}
	for _, w := range c.workers {
		if slices.Contains(skip, w) {
			continue
		}
		if err := c.addWatch(ws, w); err != nil {
			return nil, err
		}
	}
	return ws, nil
}

func (c *cluster) addWatch(ws *watches, w *workerProc) error {
	ch, err := c.send(w, request{Op: "watch", Watch: &ws.spec})
	if err != nil {
		return err
	}
	ws.sent[w] = ch
	return nil
}

// wait returns, per node, when it met the watch; an error names how many
// did not by the deadline.
func (c *cluster) wait(ctx context.Context, ws *watches) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	for w, ch := range ws.sent {
		r, err := c.await(ctx, w, ch)
		if err != nil {
			return nil, err
		}
		for name, at := range r.Times {
			out[name] = time.Unix(0, at)
		}
	}
	if missing := len(c.names) - len(out); missing > 0 {
		return out, fmt.Errorf("%s: %d of %d nodes not there by the deadline", ws.spec.Kind, missing, len(c.names))
	}
	return out, nil
}

// waitWhole waits until every node sees every node alive and member in
// its current life.
func (c *cluster) waitWhole(ctx context.Context, member string, timeout time.Duration) error {
	ws, err := c.watch(c.wholeSpec(member), timeout)
	if err != nil {
		return err
	}
	_, err = c.wait(ctx, ws)
	return err
}

func (c *cluster) wholeSpec(member string) watchSpec {
	return watchSpec{Kind: "whole", Member: member, Life: fmt.Sprintf("life-%d", c.lives[member]), Count: len(c.names)}
}

// restart stops node's worker with sig (SIGINT: graceful; SIGKILL: crash)
// and starts it again on the same address and state file; it returns when
// the stop began and when every node saw the node's new life and all
// others alive.
func (c *cluster) restart(ctx context.Context, node string, sig syscall.Signal, timeout time.Duration) (time.Time, map[string]time.Time, error) {
	old := c.owner[node]
	c.lives[node]++ // the next life, announced to the watchers first
	spec := c.wholeSpec(node)
	c.lives[node]--
	ws, err := c.watch(spec, timeout, old)
	if err != nil {
		return time.Time{}, nil, err
	}
	start := time.Now()
	c.stopWorker(old, sig)
	c.workers = slices.DeleteFunc(c.workers, func(w *workerProc) bool { return w == old })
	if err := c.startWorker(ctx, old.spec.Names); err != nil {
		return start, nil, err
	}
	if err := c.addWatch(ws, c.owner[node]); err != nil {
		return start, nil, err
	}
	times, err := c.wait(ctx, ws)
	return start, times, err
}

// stopWorker signals w and waits for it to exit.
func (c *cluster) stopWorker(w *workerProc, sig syscall.Signal) {
	_ = w.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = w.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = w.cmd.Process.Kill()
		<-done
	}
	w.stdin.Close()
}

// traffic sums the workers' traffic counters: the controller's, and the
// web nodes'; with the CPU time of their processes.
func (c *cluster) traffic(ctx context.Context) (ctl, web traffic, ctlCPU, webCPU time.Duration, err error) {
	for _, w := range c.workers {
		r, err := c.call(ctx, w, request{Op: "traffic"})
		if err != nil {
			return ctl, web, 0, 0, err
		}
		cpu, _ := benchenv.CPUTime(w.cmd.Process.Pid)
		if w.spec.Names[0] == controllerName {
			ctl, ctlCPU = *r.Traffic, cpu
			continue
		}
		web = addTraffic(web, *r.Traffic)
		webCPU += cpu
	}
	return ctl, web, ctlCPU, webCPU, nil
}

func addTraffic(a, b traffic) traffic {
	return traffic{
		Nodes: a.Nodes + b.Nodes, UDPSent: a.UDPSent + b.UDPSent, UDPSentB: a.UDPSentB + b.UDPSentB,
		UDPRecv: a.UDPRecv + b.UDPRecv, UDPRecvB: a.UDPRecvB + b.UDPRecvB,
		TCPSentB: a.TCPSentB + b.TCPSentB, TCPConns: a.TCPConns + b.TCPConns, Sampled: max(a.Sampled, b.Sampled),
	}
}

// close stops every worker gracefully (its nodes leave), at once.
func (c *cluster) close() {
	var wg sync.WaitGroup
	for _, w := range c.workers {
		wg.Go(func() { c.stopWorker(w, syscall.SIGINT) })
	}
	wg.Wait()
	c.workers = nil
}

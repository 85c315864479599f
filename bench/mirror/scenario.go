package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nodeagent/nodeagent/bench/internal/benchenv"
	"github.com/nodeagent/nodeagent/bench/internal/corpus"
)

// Anchor commands, run in the directory holding src/ (the tree) and dst/.
const (
	hashScript = "cd src && find . -type f -print0 | xargs -0 sha256sum >/dev/null"
	copyScript = "rsync -a src/ dst/"
)

// racyMargin is how long after a file's last change the controller's scan
// cache trusts its size and mtime; a fresh tree is left this long before
// the first publish, as a real tree would be.
const racyMargin = 2500 * time.Millisecond

type bench struct {
	opts    options
	pools   corpus.Pools // the realistic corpus, when asked for
	root    string
	log     *slog.Logger
	trashed int
}

// discard moves dir out of the way, into the trash that run removes at the
// end. Deleting tens of thousands of files during the run would slow the
// file creations of the next measurements: ext4 skips recently freed inodes
// when it allocates new ones.
func (b *bench) discard(dir string) error {
	trash := filepath.Join(b.root, "trash")
	if err := os.MkdirAll(trash, 0o755); err != nil {
		return fmt.Errorf("trash: %w", err)
	}
	b.trashed++
	err := os.Rename(dir, filepath.Join(trash, strconv.Itoa(b.trashed)))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("trash: %w", err)
	}
	return nil
}

// scaleResult holds every measurement at one scale.
type scaleResult struct {
	scale        int
	corpus       string
	zstdBytes    int64 // the tree's tar stream through zstd -1
	files        int
	bytes        int64
	changedFile  string
	changedBytes int64

	// Cold runs: a fresh controller and a fresh, running web node.
	hashAnchor   samples // sha256sum over the tree, s
	hashCPU      samples // its CPU time, s
	publishWall  samples // cold publish, CLI wall time, s
	publishAgent samples // cold publish as the agent reports it, s
	publishCPU   samples // controller CPU during the cold publish, s
	copyAnchor   samples // rsync -a into an empty dst, s
	copyCPU      samples // its CPU time, s
	initialSync  samples // web reports the target → web in sync, s
	afterPublish samples // publish returned → web in sync, s
	publishSync  samples // publish started → web in sync, s
	syncCPU      samples // web + controller CPU from publish returned to in sync, s
	syncRequests samples // mirror requests of the initial sync
	syncWire     samples // rx+tx bytes of the initial sync
	peakRSS      samples // web VmHWM after the full sync, bytes
	idleRSS      samples // web VmRSS opts.idle after the sync, bytes

	// 1-file changes with a controller and two web nodes in sync.
	republishWall  samples // CLI wall time, s
	republishAgent samples // as the agent reports it, s
	rsyncAnchor    samples // rsync -a over a synced dst, s
	rsyncCPU       samples // its CPU time, s
	republishCPU   samples // controller CPU during the re-publish, s
	bothServe      samples // publish start → both targets serve it, s
	wireExtra      samples // web-1 rx+tx minus the changed file's size, bytes
	wireExtraOther samples // the same on web-2, bytes
	changeRequests samples // mirror requests per web node per change

	// Sync phases of web-1 (from its debug log), seconds per phase.
	syncPhases   phaseTimes // initial sync
	changePhases phaseTimes // 1-file change
}

// scale generates the tree once and runs every measurement on it.
func (b *bench) scale(ctx context.Context, scale int, corp string) (*scaleResult, error) {
	dir := filepath.Join(b.root, fmt.Sprintf("scale%d-%s", scale, corp))
	defer b.discard(dir)
	src := filepath.Join(dir, "src")
	b.log.Info("generating the tree", "scale", scale, "corpus", corp, "dir", src)
	if err := b.generate(src, scale, corp); err != nil {
		return nil, fmt.Errorf("generate tree: %w", err)
	}
	if err := sleep(ctx, racyMargin); err != nil {
		return nil, err
	}
	b.log.Info("warming the page cache", "scale", scale)
	if _, err := timeShell(ctx, dir, hashScript); err != nil {
		return nil, err
	}
	res := &scaleResult{scale: scale, corpus: corp, changedFile: b.opts.file, zstdBytes: zstdBytes(ctx, src)}
	if scale > 1 {
		res.changedFile = "a/" + b.opts.file
	}
	for i := range b.opts.runs {
		b.log.Info("cold run", "scale", scale, "run", i+1, "of", b.opts.runs)
		if err := b.coldRun(ctx, dir, i, res); err != nil {
			return nil, fmt.Errorf("cold run %d: %w", i+1, err)
		}
	}
	if err := b.changeRuns(ctx, dir, res); err != nil {
		return nil, err
	}
	return res, nil
}

// coldRun measures the anchors, then a cold publish into a fresh controller
// and the initial sync of a fresh web node that is already running. It
// leaves dir/dst a synced copy of the tree.
func (b *bench) coldRun(ctx context.Context, dir string, i int, res *scaleResult) error {
	t, err := timeShell(ctx, dir, hashScript)
	if err != nil {
		return err
	}
	res.hashAnchor.addDuration(t.wall)
	res.hashCPU.addDuration(t.cpu)
	if err := b.discard(filepath.Join(dir, "dst")); err != nil {
		return err
	}
	if t, err = timeShell(ctx, dir, copyScript); err != nil {
		return err
	}
	res.copyAnchor.addDuration(t.wall)
	res.copyCPU.addDuration(t.cpu)

	c, err := newCluster(b.opts.bin, filepath.Join(dir, fmt.Sprintf("cold%d", i)), filepath.Join(dir, "src"))
	if err != nil {
		return err
	}
	defer b.discard(c.dir)
	defer c.stop()
	ctl, web, err := b.startCluster(ctx, c, 1)
	if err != nil {
		return err
	}
	return b.coldPublishAndSync(ctx, c, ctl, web[0], res)
}

// startCluster starts a controller and n web nodes and waits until every
// web node sees the controller.
func (b *bench) startCluster(ctx context.Context, c *cluster, n int) (*agentProc, []*agentProc, error) {
	ctl, err := c.add("controller", "controller")
	if err != nil {
		return nil, nil, err
	}
	if err := c.start(ctx, ctl); err != nil {
		return nil, nil, err
	}
	var webs []*agentProc
	for i := 1; i <= n; i++ {
		web, err := c.add(fmt.Sprintf("web-%d", i), "web")
		if err != nil {
			return nil, nil, err
		}
		if err := c.start(ctx, web); err != nil {
			return nil, nil, err
		}
		webs = append(webs, web)
	}
	for _, web := range webs {
		if err := c.joined(ctx, web); err != nil {
			return nil, nil, err
		}
	}
	return ctl, webs, nil
}

func (b *bench) coldPublishAndSync(ctx context.Context, c *cluster, ctl, web *agentProc, res *scaleResult) error {
	ctlCPU, webCPU := cpuMeter(ctl), cpuMeter(web)
	ctl0, web0 := ctlCPU(), webCPU()
	offset := logSize(ctl)
	watch := watchFirstSync(ctx, c, web)
	start := time.Now()
	pub, wall, err := c.publish(ctx, "cold")
	if err != nil {
		return err
	}
	published := time.Now()
	ctl1 := ctlCPU()
	w := <-watch
	if w.err != nil {
		return w.err
	}
	ctl2, web2 := ctlCPU(), webCPU()
	st, err := c.synced(ctx, web, pub.Seq, time.Minute)
	if err != nil {
		return err
	}
	res.initialSync.addDuration(w.inSync.Sub(w.targetSeen))
	res.afterPublish.addDuration(w.inSync.Sub(published))
	res.publishSync.addDuration(w.inSync.Sub(start))
	res.files, res.bytes = pub.Files, pub.Bytes
	res.publishWall.addDuration(wall)
	res.publishAgent.add(pub.Seconds)
	res.publishCPU.addDuration(ctl1 - ctl0)
	res.syncCPU.addDuration(ctl2 - ctl1 + web2 - web0)
	res.syncWire.add(float64(st.Transfer.RxBytes + st.Transfer.TxBytes))
	n, err := mirrorRequests(ctl, offset)
	if err != nil {
		return err
	}
	res.syncRequests.add(float64(n))
	if err := b.readRSS(ctx, web, res); err != nil {
		return err
	}
	return res.syncPhases.addLog(web, 0)
}

// firstSync is when an empty web node first reported a target, and when it
// first reported being in sync with it.
type firstSync struct {
	targetSeen, inSync time.Time
	err                error
}

// watchFirstSync polls the status of an empty web node every 5 ms.
func watchFirstSync(ctx context.Context, c *cluster, web *agentProc) <-chan firstSync {
	ch := make(chan firstSync, 1)
	go func() {
		var fs firstSync
		fs.err = benchenv.Poll(ctx, 10*time.Minute, 5*time.Millisecond, func() error {
			st, err := c.status(web)
			if err != nil {
				return err
			}
			now := time.Now()
			if st.Revision.Target != nil && fs.targetSeen.IsZero() {
				fs.targetSeen = now
			}
			if !st.Revision.InSync {
				return fmt.Errorf("%s not in sync: %+v %s", web.name, st.Revision, st.SyncError)
			}
			fs.inSync = now
			return nil
		})
		ch <- fs
	}()
	return ch
}

// cpuMeter returns a function reading p's CPU time (0 if unreadable).
func cpuMeter(p *agentProc) func() time.Duration {
	pid := p.cmd.Process.Pid
	return func() time.Duration {
		d, _ := benchenv.CPUTime(pid)
		return d
	}
}

// readRSS records the peak RSS of the web process so far and its RSS after
// opts.idle.
func (b *bench) readRSS(ctx context.Context, web *agentProc, res *scaleResult) error {
	if err := sleep(ctx, b.opts.idle); err != nil {
		return err
	}
	pid := web.cmd.Process.Pid
	idle, err := memory(pid, "VmRSS")
	if err != nil {
		return err
	}
	peak, err := memory(pid, "VmHWM")
	if err != nil {
		return err
	}
	res.idleRSS.add(float64(idle))
	res.peakRSS.add(float64(peak))
	return nil
}

// changeRuns starts a controller and two web nodes, syncs them, then
// publishes 1-file changes: the re-publish time against rsync over a synced
// dst (dir/dst, left synced by the cold runs), the time until both web
// targets serve the change, and the wire cost on each web node.
func (b *bench) changeRuns(ctx context.Context, dir string, res *scaleResult) error {
	c, err := newCluster(b.opts.bin, filepath.Join(dir, "live"), filepath.Join(dir, "src"))
	if err != nil {
		return err
	}
	defer b.discard(c.dir)
	defer c.stop()
	ctl, webs, err := b.startCluster(ctx, c, 2)
	if err != nil {
		return err
	}
	pub, _, err := c.publish(ctx, "base")
	if err != nil {
		return err
	}
	for _, web := range webs {
		if _, err := c.synced(ctx, web, pub.Seq, 10*time.Minute); err != nil {
			return err
		}
	}
	lc := &liveCluster{cluster: c, ctl: ctl, webs: webs, path: filepath.Join(c.src, res.changedFile)}
	if lc.original, err = os.ReadFile(lc.path); err != nil {
		return fmt.Errorf("changed file: %w", err)
	}
	res.changedBytes = int64(len(lc.original))
	for i := range b.opts.changes {
		b.log.Info("1-file change", "scale", res.scale, "run", i+1, "of", b.opts.changes)
		if err := lc.change(ctx, i, res); err != nil {
			return fmt.Errorf("change %d: %w", i+1, err)
		}
		t, err := timeShell(ctx, dir, copyScript)
		if err != nil {
			return err
		}
		res.rsyncAnchor.addDuration(t.wall)
		res.rsyncCPU.addDuration(t.cpu)
	}
	return nil
}

// liveCluster is a controller and web nodes in sync, and the file the
// changes rewrite.
type liveCluster struct {
	*cluster
	ctl      *agentProc
	webs     []*agentProc
	path     string // the changed file in the source tree
	original []byte // its content before the first change
}

// change waits until the web nodes are idle (a sync ends with the removal
// of the releases beyond keep, after the switch), rewrites the file (same
// size, new leading bytes), publishes it and polls the file through each
// web target until both serve it.
func (lc *liveCluster) change(ctx context.Context, i int, res *scaleResult) error {
	c, ctl, webs := lc.cluster, lc.ctl, lc.webs
	for _, web := range webs {
		if err := c.idle(ctx, web); err != nil {
			return err
		}
	}
	marker := fmt.Appendf(nil, "nodeagent bench change %d %d\n", i, time.Now().UnixNano())
	content := append(marker[:len(marker):len(marker)], lc.original[min(len(marker), len(lc.original)):]...)
	if err := os.WriteFile(lc.path, content, 0o644); err != nil {
		return fmt.Errorf("change file: %w", err)
	}
	webLog := logSize(webs[0])
	before := make([]int64, len(webs))
	for j, web := range webs {
		st, err := c.status(web)
		if err != nil {
			return err
		}
		before[j] = st.Transfer.RxBytes + st.Transfer.TxBytes
	}
	offset := logSize(ctl)
	ctlCPU := cpuMeter(ctl)
	ctl0 := ctlCPU()
	pollCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	served := servedAll(pollCtx, webs, res.changedFile, marker, start)
	pub, wall, err := c.publish(ctx, fmt.Sprintf("change %d", i))
	if err != nil {
		return err
	}
	res.republishCPU.addDuration(ctlCPU() - ctl0)
	sr := <-served
	if sr.err != nil {
		return sr.err
	}
	res.bothServe.addDuration(sr.took)
	res.republishWall.addDuration(wall)
	res.republishAgent.add(pub.Seconds)
	if pub.Changed != 1 {
		return fmt.Errorf("publish changed %d files, want 1", pub.Changed)
	}
	for j, web := range webs {
		st, err := c.synced(ctx, web, pub.Seq, time.Minute)
		if err != nil {
			return err
		}
		extra := float64(st.Transfer.RxBytes + st.Transfer.TxBytes - before[j] - res.changedBytes)
		if j == 0 {
			res.wireExtra.add(extra)
		} else {
			res.wireExtraOther.add(extra)
		}
	}
	n, err := mirrorRequests(ctl, offset)
	if err != nil {
		return err
	}
	res.changeRequests.add(float64(n) / float64(len(webs)))
	if err := c.idle(ctx, webs[0]); err != nil {
		return err
	}
	return res.changePhases.addLog(webs[0], webLog)
}

// servedAll polls rel through every web target every 2 ms until each
// serves content starting with marker, then sends how long after start the
// last one did (or the error).
func servedAll(ctx context.Context, webs []*agentProc, rel string, marker []byte, start time.Time) <-chan servedResult {
	done := make(chan servedResult, 1)
	var wg sync.WaitGroup
	errs := make([]error, len(webs))
	took := make([]time.Duration, len(webs))
	for j, web := range webs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[j] = benchenv.Poll(ctx, time.Minute, 2*time.Millisecond, func() error {
				return startsWith(filepath.Join(web.target, rel), marker)
			})
			took[j] = time.Since(start)
		}()
	}
	go func() {
		wg.Wait()
		done <- servedResult{took: slices.Max(took), err: errors.Join(errs...)}
	}()
	return done
}

type servedResult struct {
	took time.Duration
	err  error
}

func startsWith(path string, prefix []byte) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, len(prefix))
	if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != string(prefix) {
		return fmt.Errorf("%s: not the new content yet", path)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

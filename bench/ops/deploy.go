package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
)

const (
	deployTarget = time.Second
	changedFile  = "version.php"
	servePoll    = 2 * time.Millisecond
)

// deployRuns are the measurements of both paths.
type deployRuns struct {
	publishTotal, publishCmd, publishServed []time.Duration
	deployTotal, deployServed, deployServer []time.Duration
	barrierLag                              []time.Duration // served -> the wait step saw every web node
	steps                                   map[string][]time.Duration
	stepOrder                               []string
}

// benchDeploy compares `nodeagent deploy -maintenance` of a 1-file change
// with `nodeagent publish` plus waiting until both web nodes serve it.
func benchDeploy(ctx context.Context, o options, root string, log io.Writer) (string, error) {
	c, err := newCluster(o.bin, filepath.Join(root, "deploy"))
	if err != nil {
		return "", err
	}
	defer c.stop()
	if err := writeTree(c.src, o.files); err != nil {
		return "", fmt.Errorf("source tree: %w", err)
	}
	if err := os.WriteFile(filepath.Join(c.src, changedFile), []byte("<?php $version = 0;\n"), 0o644); err != nil {
		return "", err
	}
	if _, err := c.start("controller", "controller"); err != nil {
		return "", err
	}
	if err := poll(ctx, 30*time.Second, 50*time.Millisecond, "first publish", func() error {
		_, err := c.cli(ctx, "publish", "-m", "initial")
		return err
	}); err != nil {
		return "", err
	}
	for _, name := range []string{"web-1", "web-2"} {
		if _, err := c.start(name, "web"); err != nil {
			return "", err
		}
	}
	r := &deployRuns{steps: map[string][]time.Duration{}}
	change := 0
	for i := 0; i < o.runs; i++ {
		paths := []string{"publish", "deploy"}
		if i%2 == 1 {
			paths = []string{"deploy", "publish"}
		}
		for _, path := range paths {
			// Start from a quiet cluster: no fixed pause, a state check.
			if err := poll(ctx, 2*time.Minute, 20*time.Millisecond, "quiet cluster", func() error { return c.quiet(ctx) }); err != nil {
				return "", err
			}
			change++
			want := fmt.Sprintf("<?php $version = %d;\n", change)
			if err := os.WriteFile(filepath.Join(c.src, changedFile), []byte(want), 0o644); err != nil {
				return "", err
			}
			var err error
			if path == "publish" {
				err = r.publishRun(ctx, c, want, change)
			} else {
				err = r.deployRun(ctx, c, want, change)
			}
			if err != nil {
				return "", fmt.Errorf("run %d, %s: %w", i+1, path, err)
			}
			fmt.Fprintf(log, "deploy: run %d %s done\n", i+1, path)
		}
	}
	return r.markdown(o), nil
}

// served waits until every web target serves want and returns when.
func served(ctx context.Context, c *cluster, want string) (time.Time, error) {
	err := poll(ctx, 2*time.Minute, servePoll, "web nodes serve the change", func() error {
		for _, w := range c.webs {
			b, err := os.ReadFile(filepath.Join(w.target, changedFile))
			if err != nil || string(b) != want {
				return fmt.Errorf("%s does not serve it yet", w.name)
			}
		}
		return nil
	})
	return time.Now(), err
}

func (r *deployRuns) publishRun(ctx context.Context, c *cluster, want string, n int) error {
	start := time.Now()
	if _, err := c.cli(ctx, "publish", "-m", fmt.Sprintf("change %d", n)); err != nil {
		return err
	}
	cmd := time.Since(start)
	at, err := served(ctx, c, want)
	if err != nil {
		return err
	}
	r.publishCmd = append(r.publishCmd, cmd)
	r.publishServed = append(r.publishServed, at.Sub(start))
	r.publishTotal = append(r.publishTotal, at.Sub(start))
	return nil
}

func (r *deployRuns) deployRun(ctx context.Context, c *cluster, want string, n int) error {
	start := time.Now()
	type result struct {
		at  time.Time
		err error
	}
	seen := make(chan result, 1)
	go func() {
		at, err := served(ctx, c, want)
		seen <- result{at, err}
	}()
	out, err := c.cli(ctx, "deploy", "-maintenance", "-m", fmt.Sprintf("change %d", n), "-json")
	total := time.Since(start)
	if err != nil {
		return err
	}
	s := <-seen
	if s.err != nil {
		return s.err
	}
	var d api.Deploy
	if err := json.Unmarshal(out, &d); err != nil {
		return fmt.Errorf("deploy output: %w: %s", err, out)
	}
	if d.Status != api.DeploySucceeded {
		return fmt.Errorf("deploy %s: %s", d.Status, d.Error)
	}
	r.deployTotal = append(r.deployTotal, total)
	r.deployServed = append(r.deployServed, s.at.Sub(start))
	r.deployServer = append(r.deployServer, time.Duration(d.Seconds*float64(time.Second)))
	for _, st := range d.Steps {
		if st.Name == "wait for web nodes" && st.Finished != nil {
			r.barrierLag = append(r.barrierLag, st.Finished.Sub(s.at))
		}
		if _, ok := r.steps[st.Name]; !ok {
			r.stepOrder = append(r.stepOrder, st.Name)
		}
		r.steps[st.Name] = append(r.steps[st.Name], time.Duration(st.Seconds*float64(time.Second)))
	}
	return nil
}

func list(d []time.Duration) string {
	parts := make([]string, len(d))
	for i, v := range d {
		parts[i] = fmtS(v)
	}
	return strings.Join(parts, ", ")
}

func (r *deployRuns) markdown(o options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "1 controller + 2 web agent processes on 127.0.0.1, default LAN gossip timing, a source tree of %d small files; "+
		"each run changes `%s` (1 file); the two paths alternate, each starting from a quiet cluster (state check, no fixed pause). "+
		"\"Served\" is when both web targets give the new bytes (polled every %s). Seconds.\n\n", o.files+1, changedFile, servePoll)
	b.WriteString("| path | median | runs |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| `nodeagent publish`, then wait until both web nodes serve it | %s | %s |\n", fmtS(median(r.publishTotal)), list(r.publishTotal))
	fmt.Fprintf(&b, "| &nbsp;&nbsp;of which the `publish` command | %s | %s |\n", fmtS(median(r.publishCmd)), list(r.publishCmd))
	fmt.Fprintf(&b, "| `nodeagent deploy -maintenance -m x`, end to end | %s | %s |\n", fmtS(median(r.deployTotal)), list(r.deployTotal))
	fmt.Fprintf(&b, "| &nbsp;&nbsp;both web nodes serve the change, from the deploy's start | %s | %s |\n", fmtS(median(r.deployServed)), list(r.deployServed))
	fmt.Fprintf(&b, "| &nbsp;&nbsp;the deploy as the controller timed it | %s | %s |\n", fmtS(median(r.deployServer)), list(r.deployServer))
	for _, name := range r.stepOrder {
		fmt.Fprintf(&b, "| &nbsp;&nbsp;&nbsp;&nbsp;step: %s | %s | %s |\n", name, fmtS(median(r.steps[name])), list(r.steps[name]))
	}
	fmt.Fprintf(&b, "| &nbsp;&nbsp;from both web nodes serving it to the controller's barrier seeing it (gossip metadata) | %s | %s |\n", fmtS(median(r.barrierLag)), list(r.barrierLag))
	diff := median(r.deployTotal) - median(r.publishTotal)
	fmt.Fprintf(&b, "\n- deploy median minus publish-to-served median: %ss; target <= 1s: **%s**\n\n", fmtS(diff), met(diff <= deployTarget))
	return b.String()
}

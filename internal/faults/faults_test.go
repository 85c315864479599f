package faults_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/faults"
	"github.com/nodeagent/nodeagent/internal/testutil"
	"github.com/nodeagent/nodeagent/internal/testutil/netlab"
)

var binary string

func TestMain(m *testing.M) { testutil.MainWithAgent(m, &binary) }

// requireLab skips the test where the lab cannot run (fails it with
// CI=true, where it must).
func requireLab(t *testing.T) { netlab.Require(t, "iptables", "tc", "mount") }

// startCluster starts a cluster, publishes its first revision and waits
// until every node serves it; the caller closes the cluster.
func startCluster(t *testing.T, opts faults.Options) (*faults.Cluster, error) {
	t.Helper()
	opts.Binary = binary
	opts.Logf = func(format string, args ...any) {
		t.Logf("%s "+format, append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
	c, err := faults.Start(opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	_, err = c.Publish(ctx)
	if err == nil {
		_, err = c.WaitServing(ctx, 60*time.Second)
	}
	if err != nil {
		logTails(t, c)
		c.Close()
		return nil, fmt.Errorf("first publish: %w", err)
	}
	return c, nil
}

// closeCluster closes c at the end of t, with the agents' logs if t failed.
func closeCluster(t *testing.T, c **faults.Cluster) {
	t.Cleanup(func() {
		if *c == nil {
			return
		}
		if t.Failed() {
			logTails(t, *c)
		}
		if err := (*c).Close(); err != nil {
			t.Error(err)
		}
	})
}

func logTails(t *testing.T, c *faults.Cluster) {
	for _, n := range c.Nodes() {
		t.Logf("log of %s (tail):\n%s", n, strings.TrimSpace(c.LogTail(n, 3000)))
	}
}

// TestFaults runs the fixed set of faults on 1 controller and 4 web nodes:
// every kind once. A scenario that leaves the cluster broken fails, and the
// next one starts from a new cluster.
func TestFaults(t *testing.T) {
	requireLab(t)
	base := t.TempDir() // outlives the subtests: a new cluster goes on
	opts := faults.Options{SmallDisk: "web-4", Dir: filepath.Join(base, "cluster-0")}
	c, err := startCluster(t, opts)
	closeCluster(t, &c)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range faults.FixedScenarios(c.Webs(), "web-4") {
		t.Run(fmt.Sprintf("%02d-%s", i+1, strings.ReplaceAll(string(s.Kind), " ", "-")), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			if c == nil || c.Settle(ctx, 30*time.Second) != nil {
				t.Log("the cluster does not serve its target: starting a new one")
				if c != nil {
					c.Close()
				}
				var err error
				if opts.Dir, err = os.MkdirTemp(base, "cluster-"); err != nil {
					t.Fatal(err)
				}
				if c, err = startCluster(t, opts); err != nil {
					t.Fatal(err)
				}
			}
			res := c.Run(ctx, s)
			if res.Err != nil {
				t.Error(res.Err)
			}
			for _, v := range res.Violations {
				t.Errorf("violation: %s", v)
			}
			t.Logf("%s: %.1fs, serving again %.1fs after the fault", s, res.Took.Seconds(), res.Recovered.Seconds())
			if t.Failed() {
				logTails(t, c)
			}
		})
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain runs the worker when the benchmark re-executes this test binary
// as one.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		if err := runWorker(context.Background(), os.Stdin, os.Stdout); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestQuantile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 20; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 10 * time.Millisecond}, {0.99, 20 * time.Millisecond}, {0, time.Millisecond}} {
		if got := quantile(d, tc.q); got != tc.want {
			t.Errorf("quantile %v of 1..20ms = %v, want %v", tc.q, got, tc.want)
		}
	}
}

// TestSmallRun runs the whole benchmark on 5 nodes: every measure and
// restart is reported and completed (the numbers are the benchmark's
// business, not this test's), and the anchor runs too. The run is then
// stopped as it starts its second size, 6 nodes: the report still shows the
// 5 nodes, and says where it stopped.
func TestSmallRun(t *testing.T) {
	if testing.Short() {
		t.Skip("forms gossip clusters: skipped in -short mode")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out bytes.Buffer
	args := []string{"-nodes", "5,6", "-procs", "1", "-ops", "2", "-anchor-ops", "1", "-restarts", "1",
		"-idle", "1s", "-settle", "1s", "-gap", "100ms", "-timeout", "20s", "-work", t.TempDir()}
	progress := cancelOn{"6 nodes", cancel}
	if err := run(ctx, args, &out, progress); !errors.Is(err, context.Canceled) {
		t.Fatalf("run stopped at 6 nodes: %v, want it canceled\n%s", err, out.String())
	}
	report := out.String()
	for _, want := range append(measureOrder, "restart of controller (kill -INT)", "restart of web-000 (kill -9)",
		"web node, idle", "controller, during the operations", "anchor: web node",
		"#### 5 agents", "**Incomplete**: the run stopped at 6 nodes: context canceled") {
		if !strings.Contains(report, want) {
			t.Errorf("the report has no %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "not completed") || strings.Contains(report, "timed out") {
		t.Errorf("an operation or restart did not complete on 5 nodes:\n%s", report)
	}
}

// cancelOn calls cancel when the progress written to it mentions what.
type cancelOn struct {
	what   string
	cancel context.CancelFunc
}

func (c cancelOn) Write(p []byte) (int, error) {
	if strings.Contains(string(p), c.what) {
		c.cancel()
	}
	return len(p), nil
}

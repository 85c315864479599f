package main

import (
	"bytes"
	"context"
	"io"
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
// business, not this test's), and the anchor runs too.
func TestSmallRun(t *testing.T) {
	if testing.Short() {
		t.Skip("forms gossip clusters: skipped in -short mode")
	}
	var out bytes.Buffer
	args := []string{"-nodes", "5", "-procs", "1", "-ops", "2", "-anchor-ops", "1", "-restarts", "1",
		"-idle", "1s", "-settle", "1s", "-gap", "100ms", "-timeout", "20s", "-work", t.TempDir()}
	if err := run(context.Background(), args, &out, io.Discard); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	report := out.String()
	for _, want := range append(measureOrder, "restart of controller (kill -INT)", "restart of web-000 (kill -9)",
		"web node, idle", "controller, during the operations", "anchor: web node") {
		if !strings.Contains(report, want) {
			t.Errorf("the report has no %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "not completed") || strings.Contains(report, "timed out") {
		t.Errorf("an operation or restart did not complete on 5 nodes:\n%s", report)
	}
}

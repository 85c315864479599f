package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// wrkResult is what a wrk run printed: its latency percentiles and rate.
type wrkResult struct {
	name, rate, p50, p99, max string
}

// runWrk cross-checks with wrk, when it is installed: one thread, one
// connection, closed loop (wrk sends the next request when the previous
// answer arrives, so it runs as fast as the server answers, not at a fixed
// rate, and does not see queueing). It returns nil without wrk.
func runWrk(ctx context.Context, name, url string, d time.Duration) (*wrkResult, error) {
	bin, err := exec.LookPath("wrk")
	if err != nil {
		return nil, nil
	}
	out, err := exec.CommandContext(ctx, bin, "-t1", "-c1", fmt.Sprintf("-d%ds", int(d.Seconds())), "--latency", url).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("wrk %s: %w: %s", url, err, out)
	}
	return parseWrk(name, string(out)), nil
}

// parseWrk reads wrk --latency output.
func parseWrk(name, out string) *wrkResult {
	r := &wrkResult{name: name, rate: "?", p50: "?", p99: "?", max: "?"}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			r.rate = f[1]
		case len(f) == 2 && f[0] == "50%":
			r.p50 = f[1]
		case len(f) == 2 && f[0] == "99%":
			r.p99 = f[1]
		case len(f) >= 4 && f[0] == "Latency":
			r.max = f[3]
		}
	}
	return r
}

func (r *wrkResult) row() string {
	return fmt.Sprintf("| %s | %s | %s | %s | %s |\n", r.name, r.rate, r.p50, r.p99, r.max)
}

package main

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// wrkRun is what one wrk run printed.
type wrkRun struct {
	rate     float64 // requests/s
	requests int64
	// cpuPerRequest is the server's CPU time per request (keep-alive runs).
	cpuPerRequest time.Duration
	p50, p99      time.Duration
	errors        string // socket errors and non-2xx answers, "" if none
}

// wrk runs wrk with keep-alive (or a new connection per request with
// closeConns) and parses its --latency output.
func runWrk(ctx context.Context, url string, threads, conns int, d time.Duration, closeConns bool) (wrkRun, error) {
	args := []string{fmt.Sprintf("-t%d", threads), fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", int(d.Seconds())), "--latency"}
	if closeConns {
		args = append(args, "-H", "Connection: close")
	}
	out, err := exec.CommandContext(ctx, "wrk", append(args, url)...).CombinedOutput()
	if err != nil {
		return wrkRun{}, fmt.Errorf("wrk %s: %w: %s", url, err, out)
	}
	return parseWrk(string(out))
}

func parseWrk(out string) (wrkRun, error) {
	var r wrkRun
	var errs []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			r.requests, _ = strconv.ParseInt(f[0], 10, 64)
		case len(f) == 2 && f[0] == "Requests/sec:":
			r.rate, _ = strconv.ParseFloat(f[1], 64)
		case len(f) == 2 && f[0] == "50%":
			r.p50, _ = time.ParseDuration(f[1])
		case len(f) == 2 && f[0] == "99%":
			r.p99, _ = time.ParseDuration(f[1])
		case strings.HasPrefix(strings.TrimSpace(line), "Socket errors:"), strings.HasPrefix(strings.TrimSpace(line), "Non-2xx"):
			errs = append(errs, strings.TrimSpace(line))
		}
	}
	r.errors = strings.Join(errs, "; ")
	if r.rate == 0 || r.p99 == 0 {
		return r, fmt.Errorf("cannot read wrk output:\n%s", out)
	}
	return r, nil
}

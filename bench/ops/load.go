package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// sample is one request of an open-loop run.
type sample struct {
	latency time.Duration // from the scheduled start to the end of the body
	service time.Duration // from the actual send to the end of the body
	late    time.Duration // actual send minus scheduled start
	status  int
	err     error
}

// openLoop sends GET url at a constant rate for d: request i is due at
// start + i/rate whatever happened to the earlier ones, each in its own
// goroutine over the client's keep-alive connections, and its latency is
// counted from that due time. It returns the samples in schedule order.
func openLoop(ctx context.Context, hc *http.Client, url string, rate int, d time.Duration) []sample {
	n := int(d.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	samples := make([]sample, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		due := start.Add(time.Duration(i) * interval)
		sleepUntil(due)
		wg.Add(1)
		go func() {
			defer wg.Done()
			samples[i] = get(ctx, hc, url, due)
		}()
	}
	wg.Wait()
	return samples
}

// sleepUntil sleeps with nanosleep(2) rather than time.Sleep: the Go
// runtime's timers wake up to 1ms late (epoll_wait has a millisecond
// timeout), which would count as latency of every request here.
func sleepUntil(t time.Time) {
	for {
		d := time.Until(t)
		if d <= 0 {
			return
		}
		ts := syscall.NsecToTimespec(int64(d))
		if err := syscall.Nanosleep(&ts, nil); err == nil {
			return
		}
	}
}

func get(ctx context.Context, hc *http.Client, url string, due time.Time) sample {
	sent := time.Now()
	s := sample{late: sent.Sub(due)}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		s.err = err
		return s
	}
	resp, err := hc.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		s.status = resp.StatusCode
	}
	end := time.Now()
	s.latency, s.service, s.err = end.Sub(due), end.Sub(sent), err
	return s
}

// loadResult summarises an open-loop run.
type loadResult struct {
	name                  string
	sent, ok, errs, other int
	latency, service      []time.Duration // sorted
	late                  []time.Duration // sorted
	firstErr              error
	agentCPU              time.Duration // CPU the agent process used during the run
	elapsed               time.Duration
}

func summarise(name string, samples []sample, elapsed time.Duration) loadResult {
	r := loadResult{name: name, sent: len(samples), elapsed: elapsed}
	for _, s := range samples {
		switch {
		case s.err != nil:
			r.errs++
			if r.firstErr == nil {
				r.firstErr = s.err
			}
		case s.status != http.StatusOK:
			r.other++
		default:
			r.ok++
		}
		r.latency = append(r.latency, s.latency)
		r.service = append(r.service, s.service)
		r.late = append(r.late, s.late)
	}
	sortDurations(r.latency)
	sortDurations(r.service)
	sortDurations(r.late)
	return r
}

func (r loadResult) row() string {
	q := func(d []time.Duration, p float64) string { return fmtMs(quantile(d, p)) }
	cpu := "?"
	if r.elapsed > 0 {
		cpu = fmt.Sprintf("%.0f%%", 100*r.agentCPU.Seconds()/r.elapsed.Seconds())
	}
	return fmt.Sprintf("| %s | %d | %d / %d / %d | %s | %s | %s | %s | %s / %s | %s / %s | %s |\n",
		r.name, r.sent, r.ok, r.other, r.errs,
		q(r.latency, 0.50), q(r.latency, 0.99), q(r.latency, 0.999), q(r.latency, 1),
		q(r.service, 0.50), q(r.service, 0.99), q(r.late, 0.50), q(r.late, 0.99), cpu)
}

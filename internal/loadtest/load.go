package loadtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Config says where and how hard to send requests.
type Config struct {
	// Edge is the edge's HTTPS base URL, e.g. https://127.0.0.1:8443.
	Edge string
	// Probe is a readiness URL polled every 50 ms (the cluster API's
	// /readyz); "" = none.
	Probe string
	// Workers send GET / and POST /echo (4 KiB) in turn on keep-alive
	// connections; HTTP2 makes them negotiate HTTP/2.
	Workers int
	HTTP2   bool
	// Slow > 0 adds one worker that keeps a GET /slow?ms=Slow in flight.
	Slow time.Duration
	// Timeout bounds one request (the clients wait through a restart).
	Timeout time.Duration
}

// Result counts what the clients saw.
type Result struct {
	OK, Failed, Refused  int64
	SlowOK, SlowFailed   int64
	ProbeOK, ProbeFailed int64
	Errors               []string        // the first few failures
	Latencies            []time.Duration // of the answered fast requests
}

// Load is a running load.
type Load struct {
	cfg    Config
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	res    Result
}

// Start starts the workers; Stop ends them.
func Start(cfg Config) *Load {
	if cfg.Timeout == 0 {
		cfg.Timeout = 60 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{cfg: cfg, cancel: cancel}
	for range cfg.Workers {
		c := client(cfg)
		l.wg.Go(func() { l.work(ctx, c) })
	}
	if cfg.Slow > 0 {
		c := client(cfg)
		l.wg.Go(func() { l.slow(ctx, c) })
	}
	if cfg.Probe != "" {
		c := client(Config{Timeout: cfg.Timeout})
		l.wg.Go(func() { l.probe(ctx, c) })
	}
	return l
}

func client(cfg Config) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: cfg.Timeout}).DialContext,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, // the node's self-signed certificate
		ForceAttemptHTTP2:   cfg.HTTP2,
		MaxIdleConnsPerHost: 4,
	}
	if !cfg.HTTP2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: cfg.Timeout}
}

var postBody = bytes.Repeat([]byte("x"), 4096)

func (l *Load) work(ctx context.Context, c *http.Client) {
	for i := 0; ctx.Err() == nil; i++ {
		start := time.Now()
		var err error
		if i%2 == 0 {
			err = l.do(ctx, c, http.MethodGet, l.cfg.Edge+"/", nil, "ok")
		} else {
			err = l.do(ctx, c, http.MethodPost, l.cfg.Edge+"/echo", postBody, fmt.Sprintf("got %d", len(postBody)))
		}
		if ctx.Err() != nil {
			return
		}
		l.record(err, func(r *Result) { r.OK++; r.Latencies = append(r.Latencies, time.Since(start)) }, func(r *Result) { r.Failed++ })
	}
}

func (l *Load) slow(ctx context.Context, c *http.Client) {
	url := fmt.Sprintf("%s/slow?ms=%d", l.cfg.Edge, l.cfg.Slow.Milliseconds())
	for ctx.Err() == nil {
		err := l.do(ctx, c, http.MethodGet, url, nil, "slow")
		if ctx.Err() != nil {
			return
		}
		l.record(err, func(r *Result) { r.SlowOK++ }, func(r *Result) { r.SlowFailed++ })
	}
}

func (l *Load) probe(ctx context.Context, c *http.Client) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		err := l.do(ctx, c, http.MethodGet, l.cfg.Probe, nil, "")
		if ctx.Err() != nil {
			return
		}
		l.record(err, func(r *Result) { r.ProbeOK++ }, func(r *Result) { r.ProbeFailed++ })
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// do sends one request and checks the status (200) and, unless want is
// "", the body.
func (l *Load) do(ctx context.Context, c *http.Client, method, url string, body []byte, want string) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	switch {
	case err != nil:
		return fmt.Errorf("%s %s: body: %w", method, url, err)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%s %s: %s: %.200s", method, url, resp.Status, got)
	case want != "" && string(got) != want:
		return fmt.Errorf("%s %s: body %.200q, want %q", method, url, got, want)
	}
	return nil
}

func (l *Load) record(err error, ok, failed func(*Result)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		ok(&l.res)
		return
	}
	failed(&l.res)
	if errors.Is(err, syscall.ECONNREFUSED) {
		l.res.Refused++
	}
	if len(l.res.Errors) < 10 {
		l.res.Errors = append(l.res.Errors, time.Now().Format("15:04:05.000 ")+err.Error())
	}
}

// Snapshot returns the counts so far (without latencies).
func (l *Load) Snapshot() Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.res
	r.Errors = slices.Clone(r.Errors)
	r.Latencies = nil
	return r
}

// Stop ends the workers (requests in flight are abandoned, not counted)
// and returns the result.
func (l *Load) Stop() Result {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.res
}

// Percentile returns the p-th percentile (0..100) of ds.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

// Summary is a Result without the latencies, with their percentiles.
type Summary struct {
	OK, Failed, Refused  int64
	SlowOK, SlowFailed   int64
	ProbeOK, ProbeFailed int64
	Errors               []string
	P50, P99, P999, Max  time.Duration
}

// Summary summarizes r.
func (r Result) Summary() Summary {
	return Summary{
		OK: r.OK, Failed: r.Failed, Refused: r.Refused, SlowOK: r.SlowOK, SlowFailed: r.SlowFailed,
		ProbeOK: r.ProbeOK, ProbeFailed: r.ProbeFailed, Errors: r.Errors,
		P50: Percentile(r.Latencies, 50), P99: Percentile(r.Latencies, 99),
		P999: Percentile(r.Latencies, 99.9), Max: Percentile(r.Latencies, 100),
	}
}

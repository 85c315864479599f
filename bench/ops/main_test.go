package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/bench/internal/benchenv"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestQuantileAndMedian(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 20; i++ {
		d = append(d, ms(i))
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, ms(10)}, {0.99, ms(20)}, {0.999, ms(20)}, {1, ms(20)}, {0, ms(1)}} {
		if got := quantile(d, tc.q); got != tc.want {
			t.Errorf("quantile %v of 1..20ms: %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := quantile(nil, 0.5); got != 0 {
		t.Errorf("quantile of nothing: %v", got)
	}
	if got := median([]time.Duration{ms(5), ms(1), ms(3), ms(9)}); got != ms(4) {
		t.Errorf("median of an even count: %v", got)
	}
	if got := median([]time.Duration{ms(5), ms(1), ms(3)}); got != ms(3) {
		t.Errorf("median of an odd count: %v", got)
	}
}

// TestOpenLoopCountsQueueing: a server that serialises requests and stalls
// on the first one. An open-loop generator keeps sending on schedule, and
// the requests that queued behind the stall carry the wait in their
// latency; a closed-loop one would send late and hide it.
func TestOpenLoopCountsQueueing(t *testing.T) {
	var mu sync.Mutex
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if n.Add(1) == 1 {
			time.Sleep(300 * time.Millisecond)
		}
		if n.Load() == 7 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	samples := openLoop(context.Background(), loadClient(nil), srv.URL, 100, 600*time.Millisecond)
	r := summarise("test", samples, 600*time.Millisecond)
	if r.sent != 60 || r.ok != 59 || r.other != 1 || r.errs != 0 {
		t.Fatalf("sent %d, ok %d, other %d, errors %d (first %v)", r.sent, r.ok, r.other, r.errs, r.firstErr)
	}
	// Sent on time: nanosleep, not the runtime's millisecond timers.
	if p50 := quantile(r.late, 0.5); p50 > 500*time.Microsecond {
		t.Logf("sender late p50 %v (a loaded machine?)", p50)
	}
	// The requests due in the first 200ms waited for the stall: at least
	// 100ms each.
	slow := 0
	for _, s := range samples[:20] {
		if s.latency >= 100*time.Millisecond {
			slow++
		}
	}
	if slow < 15 {
		t.Fatalf("only %d of the 20 requests due during the stall show it", slow)
	}
	if p50 := quantile(r.late, 0.5); p50 > 100*time.Millisecond {
		t.Fatalf("requests were sent late (p50 %v): the schedule waited for answers", p50)
	}
	if !strings.Contains(r.row(), "| test | 60 | 59 / 1 / 0 |") {
		t.Fatalf("row: %s", r.row())
	}
}

func TestParseOptions(t *testing.T) {
	sub, o, err := parseOptions([]string{"readyz", "-rate", "50"}, io.Discard)
	if err != nil || sub != "readyz" || o.rate != 50 || o.duration != 20*time.Second {
		t.Fatalf("readyz: %q %+v %v", sub, o, err)
	}
	sub, o, err = parseOptions([]string{"deploy"}, io.Discard)
	if err != nil || sub != "deploy" || o.runs != 5 || o.command != "go run ./bench/ops deploy" {
		t.Fatalf("deploy: %q %+v %v", sub, o, err)
	}
	for _, args := range [][]string{nil, {"-rate", "5"}, {"nope"}, {"deploy", "-rate", "5"}, {"readyz", "-rate", "0"}, {"deploy", "extra"}} {
		if _, _, err := parseOptions(args, io.Discard); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

func TestCPUTime(t *testing.T) {
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) { // burn some CPU
	}
	d, err := benchenv.CPUTime(os.Getpid())
	if err != nil || d <= 0 {
		t.Fatalf("cpu time of this process: %v %v", d, err)
	}
	if _, err := benchenv.CPUTime(-1); err == nil {
		t.Fatal("cpu time of no process: no error")
	}
}

func TestParseWrk(t *testing.T) {
	out := `Running 10s test @ http://127.0.0.1:8080/readyz
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   101.00us   50.00us   2.10ms   90.00%
    Req/Sec     9.00k   500.00     10.00k    70.00%
  Latency Distribution
     50%   90.00us
     75%  100.00us
     90%  120.00us
     99%  300.00us
  90000 requests in 10.00s, 10.00MB read
Requests/sec:   9000.50
Transfer/sec:      1.00MB
`
	got := *parseWrk("x", out)
	want := wrkResult{name: "x", rate: "9000.50", p50: "90.00us", p99: "300.00us", max: "2.10ms"}
	if got != want {
		t.Fatalf("parseWrk: %+v, want %+v", got, want)
	}
}

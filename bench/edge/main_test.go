package main

import (
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	out := `Running 10s test @ https://127.0.0.1:8443/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.28ms   10.10ms 150.00ms   80.00%
    Req/Sec     2.31k   300.00     3.00k    70.00%
  Latency Distribution
     50%   12.28ms
     75%   15.00ms
     90%   20.00ms
     99%   76.00ms
  46090 requests in 10.00s, 53.41MB read
  Socket errors: connect 0, read 3, write 0, timeout 0
Requests/sec:   4609.00
Transfer/sec:      5.34MB
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.rate != 4609 || r.requests != 46090 || r.p50 != 12280*time.Microsecond || r.p99 != 76*time.Millisecond || r.errors != "Socket errors: connect 0, read 3, write 0, timeout 0" {
		t.Errorf("parsed %+v", r)
	}
	if _, err := parseWrk("unable to connect"); err == nil {
		t.Error("no error for output without numbers")
	}
}

// Package loadtest sends requests through a web node's edge while its agent
// restarts, and counts what the clients see: answers, failures, refused
// connections, latency, readiness probes. It also serves the backend those
// requests reach. The process tests, the test under real systemd and
// bench/restart share it; the product never imports it.
package loadtest

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Backend answers the load's requests: GET / with "ok", POST /echo with
// the length of the body it read, GET /slow?ms=N with "slow" after N
// milliseconds (a long PHP page).
func Backend() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "got %d", n)
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			io.WriteString(w, "slow")
		case <-r.Context().Done():
		}
	})
	return mux
}

package guard_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/nodeagent/nodeagent/internal/guard"
)

// BenchmarkGuard measures what the protections cost a request on the
// listeners' hot path (an edge request, an agent fetching content): small
// answers and 1 MiB uploads and downloads, over HTTP/1.1 and HTTP/2, each
// served bare (http.Server with only the header timeouts, as before) and
// guarded (Limits.Server, Limits.Listen), in the same run.
//
//	go test -run '^$' -bench Guard -benchtime 3s ./internal/guard/
func BenchmarkGuard(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 1<<20)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/download" {
			w.Write(payload)
			return
		}
		w.Write([]byte("ok"))
	})
	for _, proto := range []string{"http1", "h2"} {
		for _, guarded := range []bool{false, true} {
			l := guard.Edge(0, nil)
			if !guarded {
				l = guard.Limits{ReadHeaderTimeout: l.ReadHeaderTimeout, IdleTimeout: l.IdleTimeout}
			}
			addr := server(b, l, h, proto == "h2")
			client := benchClient(b, proto)
			scheme := "http"
			if proto == "h2" {
				scheme = "https"
			}
			name := fmt.Sprintf("%s/guarded=%v", proto, guarded)
			b.Run(name+"/small", func(b *testing.B) {
				for b.Loop() {
					get(b, client, scheme+"://"+addr+"/", nil)
				}
			})
			b.Run(name+"/upload-1MiB", func(b *testing.B) {
				b.SetBytes(int64(len(payload)))
				for b.Loop() {
					get(b, client, scheme+"://"+addr+"/", payload)
				}
			})
			b.Run(name+"/download-1MiB", func(b *testing.B) {
				b.SetBytes(int64(len(payload)))
				for b.Loop() {
					get(b, client, scheme+"://"+addr+"/download", nil)
				}
			})
		}
	}
}

func benchClient(b *testing.B, proto string) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	if proto == "h2" {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
		tr.ForceAttemptHTTP2 = true
	}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// get sends a request (a POST when body is not nil) and reads the answer.
func get(b *testing.B, c *http.Client, url string, body []byte) {
	method, rd := http.MethodGet, io.Reader(nil)
	if body != nil {
		method, rd = http.MethodPost, bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

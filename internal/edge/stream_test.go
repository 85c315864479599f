package edge_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

const chunk = 1 << 20

// clients over HTTP/2 and HTTP/1.1.
func protocolClients(tb testing.TB, pki *testPKI) map[string]*http.Client {
	h1 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool, ServerName: "moodle.test"}}
	tb.Cleanup(h1.CloseIdleConnections)
	return map[string]*http.Client{"h2": pki.client(tb, ""), "http/1.1": {Transport: h1}}
}

// An upload reaches the backend while the client is still sending it: the
// backend reads the first MiB and only then does the client send the rest.
func TestUploadStreams(t *testing.T) {
	pki := newTestPKI(t)
	firstMiB := make(chan struct{}, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadFull(r.Body, make([]byte, chunk)); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		firstMiB <- struct{}{}
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, chunk+n)
	}))
	defer backend.Close()
	e := startEdge(t, pki, backend.URL, nil)

	for proto, c := range protocolClients(t, pki) {
		t.Run(proto, func(t *testing.T) {
			body, w := io.Pipe()
			req, _ := http.NewRequest(http.MethodPost, "https://"+e.HTTPSAddr()+"/repository/upload.php", body)
			type result struct {
				resp *http.Response
				err  error
			}
			done := make(chan result, 1)
			go func() {
				resp, err := c.Do(req)
				done <- result{resp, err}
			}()
			go w.Write(make([]byte, chunk))
			select {
			case <-firstMiB:
			case r := <-done:
				t.Fatalf("request ended before the upload: %v", r.err)
			case <-time.After(30 * time.Second):
				w.CloseWithError(io.ErrUnexpectedEOF)
				t.Fatal("the backend got nothing while the client was still sending: the edge buffers uploads")
			}
			go func() {
				w.Write(make([]byte, chunk))
				w.Close()
			}()
			r := receive(t, done)
			if r.err != nil {
				t.Fatal(r.err)
			}
			defer r.resp.Body.Close()
			if got := readBody(t, r.resp); got != strconv.Itoa(2*chunk) {
				t.Errorf("backend counted %s bytes, want %d", got, 2*chunk)
			}
		})
	}
}

// A download reaches the client while the backend is still producing it,
// with a known length and chunked.
func TestDownloadStreams(t *testing.T) {
	pki := newTestPKI(t)
	var gates sync.Map // request id -> chan struct{}: the client got the first piece
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		first, _ := strconv.Atoi(q.Get("first"))
		gate, _ := gates.Load(q.Get("id"))
		if q.Get("length") == "known" {
			w.Header().Set("Content-Length", strconv.Itoa(first+chunk))
		}
		w.Write(make([]byte, first))
		http.NewResponseController(w).Flush()
		select {
		case <-gate.(chan struct{}):
		case <-r.Context().Done():
			return
		}
		w.Write(make([]byte, chunk))
	}))
	defer backend.Close()
	e := startEdge(t, pki, backend.URL, nil)

	// A first piece smaller than the server's write buffer is what a
	// proxy that does not flush keeps back; a whole MiB is the common case.
	for proto, c := range protocolClients(t, pki) {
		for _, length := range []string{"known", "chunked"} {
			for _, first := range []int{100, chunk} {
				name := fmt.Sprintf("%s %s %d", proto, length, first)
				t.Run(name, func(t *testing.T) {
					gate := make(chan struct{})
					gates.Store(name, gate)
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					q := url.Values{"id": {name}, "length": {length}, "first": {strconv.Itoa(first)}}
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+e.HTTPSAddr()+"/pluginfile.php?"+q.Encode(), nil)
					resp, err := c.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					defer resp.Body.Close()
					got := make(chan error, 1)
					go func() {
						_, err := io.ReadFull(resp.Body, make([]byte, first))
						got <- err
					}()
					select {
					case err := <-got:
						if err != nil {
							t.Fatal(err)
						}
					case <-time.After(30 * time.Second):
						t.Fatal("the client did not get what the backend sent before pausing: the edge holds downloads back")
					}
					close(gate)
					if n, err := io.Copy(io.Discard, resp.Body); err != nil || n != chunk {
						t.Errorf("rest of the body: %d bytes, %v; want %d", n, err, chunk)
					}
				})
			}
		}
	}
}

// 256 MiB up and 256 MiB down (128 MiB under the race detector) pass
// through the edge intact while the process heap (client, edge and backend
// together) grows by a small fraction of that.
func TestLargeTransfers(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 512 MiB")
	}
	size := int64(256 << 20)
	if raceEnabled {
		size /= 2
	}
	const maxHeapGrowth = 32 << 20
	pki := newTestPKI(t)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			h := sha256.New()
			io.Copy(h, r.Body)
			io.WriteString(w, hex.EncodeToString(h.Sum(nil)))
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		io.Copy(w, generated(2, size))
	}))
	defer backend.Close()
	e := startEdge(t, pki, backend.URL, nil)
	c := pki.client(t, "")
	heap := watchHeap(t)

	h := sha256.New()
	resp, err := c.Post("https://"+e.HTTPSAddr()+"/repository/upload.php", "application/octet-stream", io.TeeReader(generated(1, size), h))
	if err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, resp); got != hex.EncodeToString(h.Sum(nil)) {
		t.Errorf("upload: backend hashed %s, client sent %x", got, h.Sum(nil))
	}
	resp.Body.Close()

	resp, err = c.Get("https://" + e.HTTPSAddr() + "/pluginfile.php/big.zip")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h.Reset()
	if n, err := io.Copy(h, resp.Body); err != nil || n != size {
		t.Fatalf("download: %d bytes, %v", n, err)
	}
	want := sha256.New()
	io.Copy(want, generated(2, size))
	if !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
		t.Error("download: content differs")
	}

	if growth := heap(); growth > maxHeapGrowth {
		t.Errorf("heap grew by %d MiB while moving 2×%d MiB (limit %d MiB): bodies are buffered", growth>>20, size>>20, maxHeapGrowth>>20)
	} else {
		t.Logf("peak heap growth %d MiB while moving 2×%d MiB", growth>>20, size>>20)
	}
}

// generated is n reproducible pseudo-random bytes.
func generated(seed uint64, n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{byte(seed)}), n)
}

// watchHeap samples the heap in use until the returned func is called,
// which reports the peak growth over the starting point.
func watchHeap(tb testing.TB) func() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapInuse, ms.HeapInuse
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
		}
	})
	var once sync.Once
	report := func() uint64 {
		once.Do(func() { close(stop); wg.Wait() })
		return peak - base
	}
	tb.Cleanup(func() { report() })
	return report
}

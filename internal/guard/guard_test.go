package guard_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/guard"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// fast are the default limits with the windows shrunk so that tests run in
// seconds (yet long enough for a loaded machine's scheduling stalls); the
// logic is the one the defaults use.
func fast() guard.Limits {
	l := guard.Cluster()
	l.BodyWindow = 1500 * time.Millisecond
	l.BodyMinBytes = 1024
	l.WriteWindow = 1500 * time.Millisecond
	l.ReadHeaderTimeout = 2 * time.Second
	return l
}

// server serves h with limits l on 127.0.0.1 (TLS with HTTP/2 when tls is
// set) and returns its address.
func server(t testing.TB, l guard.Limits, h http.Handler, useTLS bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := l.Server(h)
	gl := l.Listen(ln, "test", nil)
	if useTLS {
		cert := httptest.NewTLSServer(nil) // borrow its certificate
		srv.TLSConfig = &tls.Config{Certificates: cert.TLS.Certificates, NextProtos: []string{"h2", "http/1.1"}}
		cert.Close()
		go srv.ServeTLS(gl, "", "")
	} else {
		go srv.Serve(gl)
	}
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// readAll is a handler that reads the whole body and answers its size, or
// 400 with the read error.
var readAll = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "%d", n)
})

// trickle sends a POST declaring length bytes on c, then its body: chunk
// bytes every gap, until done is closed or the body is sent. It returns
// when writing fails or after the last chunk.
func trickle(c net.Conn, path string, length, chunk int, gap time.Duration, done <-chan struct{}) error {
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", path, length)
	for sent := 0; sent < length; sent += chunk {
		if _, err := c.Write([]byte(strings.Repeat("x", min(chunk, length-sent)))); err != nil {
			return err
		}
		select {
		case <-done:
			return nil
		case <-time.After(gap):
		}
	}
	return nil
}

// closedWithin fails unless the server closes c (EOF or reset after any
// answer) within d.
func closedWithin(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %s", d)
	}
}

func dial(t *testing.T, addr string, useTLS bool) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	if useTLS {
		c, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestTricklingBodyIsCutWhileASteadyOneCompletes(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", useTLS), func(t *testing.T) {
			l := fast()
			addr := server(t, l, readAll, useTLS)
			done := make(chan struct{})
			defer close(done)

			// A byte every window/3: always some progress, never enough.
			slow := dial(t, addr, useTLS)
			go trickle(slow, "/", 200000, 1, l.BodyWindow/3, done)
			// 512 bytes every 100 ms, for four windows: it must complete.
			steady := dial(t, addr, useTLS)
			steadyErr := make(chan error, 1)
			go func() { steadyErr <- trickle(steady, "/", 32768, 512, 100*time.Millisecond, done) }()

			start := time.Now()
			closedWithin(t, slow, 4*l.BodyWindow)
			t.Logf("trickling connection closed after %s", time.Since(start).Round(time.Millisecond))

			if err := <-steadyErr; err != nil {
				t.Fatalf("steady upload: %v", err)
			}
			steady.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(steady), nil)
			if err != nil {
				t.Fatalf("steady upload: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(body) != "32768" {
				t.Fatalf("steady upload: %d %q", resp.StatusCode, body)
			}
			if took := time.Since(start); took < 2*l.BodyWindow {
				t.Fatalf("steady upload took %s: shorter than two windows proves nothing", took)
			}
		})
	}
}

// TestUnreadBodyIsCut: a handler that answers without reading (405, a
// redirect) leaves the body to the server, which reads it to reuse the
// connection: that read is bounded too.
func TestUnreadBodyIsCut(t *testing.T) {
	l := fast()
	addr := server(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusMethodNotAllowed)
	}), false)
	c := dial(t, addr, false)
	done := make(chan struct{})
	defer close(done)
	go trickle(c, "/healthz", 200000, 1, l.BodyWindow/3, done)
	closedWithin(t, c, 4*l.BodyWindow)
}

func TestTricklingBodyIsCutOverHTTP2(t *testing.T) {
	l := fast()
	addr := server(t, l, readAll, true)
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	post := func(chunk int, gap time.Duration, total int) (*http.Response, error) {
		pr, pw := io.Pipe()
		go func() {
			for sent := 0; sent < total; sent += chunk {
				if _, err := pw.Write([]byte(strings.Repeat("y", chunk))); err != nil {
					return
				}
				time.Sleep(gap)
			}
			pw.Close()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*l.BodyWindow+5*time.Second)
		t.Cleanup(cancel)
		req, _ := http.NewRequestWithContext(ctx, "POST", "https://"+addr+"/", pr)
		return client.Do(req)
	}
	start := time.Now()
	resp, err := post(1, l.BodyWindow/3, 200000)
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("not HTTP/2: %s", resp.Proto)
		}
		if resp.StatusCode == 200 {
			t.Fatalf("trickling body accepted: %q", body)
		}
	}
	if took := time.Since(start); took > 4*l.BodyWindow {
		t.Fatalf("trickling stream ended after %s", took)
	}
	resp, err = post(512, 100*time.Millisecond, 32768)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "32768" {
		t.Fatalf("steady upload: %d %q", resp.StatusCode, body)
	}
}

// TestStalledReaderIsCut: a client that stops reading a large answer is
// cut within the write window; one that reads slowly but steadily gets it
// all.
func TestStalledReaderIsCut(t *testing.T) {
	l := fast()
	const size = 64 << 20 // beyond any socket buffers
	handlerErr := make(chan error, 2)
	addr := server(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(size))
		buf := make([]byte, 32<<10)
		var err error
		for n := 0; n < size && err == nil; n += len(buf) {
			_, err = w.Write(buf)
		}
		handlerErr <- err
	}), false)

	stalled := dial(t, addr, false)
	fmt.Fprintf(stalled, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case err := <-handlerErr:
		if err == nil {
			t.Fatal("the whole answer was written to a client that reads nothing")
		}
	case <-time.After(10 * l.WriteWindow):
		t.Fatal("write to a stalled client still blocked")
	}

	steady := dial(t, addr, false)
	fmt.Fprintf(steady, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	rd := bufio.NewReader(steady)
	resp, err := http.ReadResponse(rd, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256<<10)
	var got int64
	for got < size {
		n, err := resp.Body.Read(buf)
		got += int64(n)
		if err != nil {
			break
		}
		if got < 8<<20 {
			time.Sleep(time.Millisecond) // slow at first, while buffers fill
		}
	}
	if got != size {
		t.Fatalf("steady reader got %d of %d bytes", got, size)
	}
}

// TestHijackedConnectionKeepsNoDeadline: a WebSocket outlives the windows,
// even when its handler returns at once and left a body unread.
func TestHijackedConnectionKeepsNoDeadline(t *testing.T) {
	l := fast()
	addr := server(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		go func() {
			defer c.Close()
			io.Copy(c, brw) // echo
		}()
	}), false)
	c := dial(t, addr, false)
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\nContent-Length: 4\r\n\r\n")
	rd := bufio.NewReader(c)
	resp, err := http.ReadResponse(rd, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	time.Sleep(3 * l.BodyWindow) // quiet for longer than any window
	fmt.Fprint(c, "ping")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 4)
	if _, err := io.ReadFull(rd, got); err != nil || string(got) != "ping" {
		t.Fatalf("after a quiet spell: %q %v", got, err)
	}
}

func TestPerClientCap(t *testing.T) {
	l := fast()
	l.MaxConnsPerClient = 3
	addr := server(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), false)
	_, port, _ := net.SplitHostPort(addr)
	var held []net.Conn
	for range 3 {
		c := dial(t, addr, false)
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	// The fourth is closed at once: no answer, no waiting for headers.
	extra := dial(t, addr, false)
	fmt.Fprintf(extra, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	extra.SetReadDeadline(time.Now().Add(l.ReadHeaderTimeout / 2))
	if resp, err := http.ReadResponse(bufio.NewReader(extra), nil); err == nil || isTimeout(err) {
		t.Fatalf("a fourth connection from one address: %v %v", resp, err)
	}

	// Another address (all of 127/8 is this host) still gets in.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	other, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	fmt.Fprintf(other, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	other.SetReadDeadline(time.Now().Add(5 * time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(other), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("other client: %v %v", resp, err)
	}

	// A closed connection frees its place.
	held[0].Close()
	testutil.Eventually(t, 5*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(time.Second))
		_, err = http.ReadResponse(bufio.NewReader(c), nil)
		return err
	})
}

func TestExemptClientsHaveNoCap(t *testing.T) {
	l := fast()
	l.MaxConnsPerClient = 1
	l.Exempt = mustPrefixes(t, "127.0.0.0/8")
	addr := server(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), false)
	for range 3 {
		c := dial(t, addr, false)
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTotalCapQueues: past MaxConns a connection waits, unserved, until
// another closes.
func TestTotalCapQueues(t *testing.T) {
	l := fast()
	l.MaxConns = 2
	addr := server(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), false)
	a, b := dial(t, addr, false), dial(t, addr, false)
	for _, c := range []net.Conn{a, b} {
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
			t.Fatal(err)
		}
	}
	third := dial(t, addr, false)
	fmt.Fprintf(third, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	third.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	rd := bufio.NewReader(third)
	if _, err := rd.Peek(1); err == nil {
		t.Fatal("a third connection was served past MaxConns 2")
	}
	a.Close()
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	if resp, err := http.ReadResponse(rd, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("queued connection after a slot freed: %v %v", resp, err)
	}
}

func mustPrefixes(t *testing.T, ss ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

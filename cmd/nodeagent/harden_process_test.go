package main_test

// Issue 12's attacks against the built binary: a flood of made-up methods,
// bodies that trickle on every listener, a directory swapped for a symlink
// while publishing, releases altered on a web node, and the integrity
// monitor that finds and repairs it.

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// addrsOf returns the cluster and local API addresses of a config file.
func addrsOf(t *testing.T, path string) (cluster, local string) {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Cluster.Listen, cfg.API.Listen
}

// setMirrorOption adds a line under the mirror section of a config file.
func setMirrorOption(t *testing.T, path, line string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "  keep: 3\n", "  keep: 3\n  "+line+"\n", 1)
	writeFile(t, path, s, 0o644)
}

// rss returns the resident memory of a process in bytes.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmRSS in /proc/%d/status", pid)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// metricsText returns the local API's /metrics.
func metricsText(t *testing.T, local string) string {
	t.Helper()
	resp, err := http.Get("http://" + local + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// rawRequest sends one request line with method to addr (TLS when tlsConf
// is set) from the address from (nil: any) and returns the status line of
// the answer, or the error.
func rawRequest(addr string, tlsConf *tls.Config, from net.Addr, method string) (string, error) {
	d := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: from}
	var c net.Conn
	var err error
	if tlsConf != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, tlsConf)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := fmt.Fprintf(c, "%s /healthz HTTP/1.1\r\nHost: x\r\n\r\n", method); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// TestProcessMethodFloodIsBounded: 2000 requests with 60 KB methods and
// 2000 with a few KB each, to both APIs, without credentials. Before,
// every method became a metrics series for good (26 MB to 220 MB of RSS).
// Now the series stay a handful, /metrics small, the memory flat.
func TestProcessMethodFloodIsBounded(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t)
	writeFile(t, filepath.Join(pc.source, "index.php"), "<?php", 0o644)
	cluster, local := addrsOf(t, pc.writeConfig("controller", "controller"))
	pc.start("controller")
	testutil.Eventually(t, 20*time.Second, func() error {
		_, err := http.Get("http://" + local + "/healthz")
		return err
	})
	pid := pc.procs["controller"].Process.Pid
	before := rss(t, pid)
	tlsConf := &tls.Config{InsecureSkipVerify: true}

	// First the 60 KB methods: beyond the header limit, each is answered
	// 431 or reset while the rest is still being sent; none may hang.
	// (The server holds each such connection half a second after: the
	// per-client cap closes what exceeds it, which is right too.)
	flood(t, 2000, func(i int) error {
		method := fmt.Sprintf("M%08d%s", i, strings.Repeat("X", 60<<10))
		if _, err := rawRequest(cluster, tlsConf, nil, method); err != nil && isTimeout(err) {
			return fmt.Errorf("60 KB method: %w", err)
		}
		return nil
	})
	testutil.Eventually(t, 20*time.Second, func() error { // the cap's closes are over
		_, err := rawRequest(cluster, tlsConf, nil, "GET")
		return err
	})
	// Then 2000 methods of 1-3 KB to each API, each answered 405: from
	// one address per worker, so that a server slow to see a closed
	// connection (a loaded machine) never meets the per-client cap.
	flood(t, 2000, func(i int) error {
		method := fmt.Sprintf("S%08d%s", i, strings.Repeat("Y", 1000+i))
		from := &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%4))}
		for _, addr := range []string{cluster, local} {
			conf := tlsConf
			if addr == local {
				conf = nil
			}
			if status, err := rawRequest(addr, conf, from, method); err != nil || !strings.Contains(status, " 405 ") {
				return fmt.Errorf("%s: %d-byte method: %q %v", addr, len(method), status, err)
			}
		}
		return nil
	})
	status, err := rawRequest(cluster, tlsConf, nil, "BREW")
	if err != nil || !strings.Contains(status, "405") {
		t.Fatalf("an unknown method after the flood: %q %v", status, err)
	}

	text := metricsText(t, local)
	series, unbounded := 0, 0
	bounded := regexp.MustCompile(`method="(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS|CONNECT|TRACE|other)"`)
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "nodeagent_http_requests_total{") {
			series++
			if !bounded.MatchString(line) {
				if unbounded++; unbounded == 1 {
					t.Errorf("series with an unbounded method: %.200s", line)
				}
			}
		}
	}
	if series == 0 || series > 20 {
		t.Fatalf("%d request series after the flood", series)
	}
	if len(text) > 256<<10 {
		t.Fatalf("/metrics is %d bytes after the flood", len(text))
	}
	after := rss(t, pid)
	t.Logf("RSS %d MB before, %d MB after 6000 requests; %d request series; /metrics %d KB",
		before>>20, after>>20, series, len(text)>>10)
	if after-before > 64<<20 {
		t.Fatalf("RSS grew by %d MB", (after-before)>>20)
	}
}

// flood calls f(0..n-1) from 4 workers and fails the test with the first
// error.
func flood(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	const workers = 4
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n && errs[w] == nil; i += workers {
				errs[w] = f(i)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("flood: %v", err)
		}
	}
}

// echoBackend reads each request body whole and answers its size.
func echoBackend(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "read %d", n)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// listener is one of an agent's listeners as a test dials it.
type listener struct {
	name, addr string
	tls        bool
	// request is the head of a request whose body the far end reads whole.
	request string
}

// post dials l and sends the head of its request declaring length bytes
// of body; nil (the test marked failed) when it cannot.
func (l listener) post(t *testing.T, length int) net.Conn {
	d := &net.Dialer{Timeout: 10 * time.Second}
	var c net.Conn
	var err error
	if l.tls {
		c, err = tls.DialWithDialer(d, "tcp", l.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	} else {
		c, err = d.Dial("tcp", l.addr)
	}
	if err == nil {
		_, err = fmt.Fprintf(c, "%sContent-Length: %d\r\n\r\n", l.request, length)
	}
	if err != nil {
		t.Errorf("%s: %v", l.name, err)
		return nil
	}
	return c
}

// TestProcessSlowBodiesAreCutOnEveryListener, with the agent's real
// defaults: on the cluster API, the local API and the edge's :443 and :80,
// a POST declaring 200000 bytes then sending one byte every 5 s is cut
// within a minute, while an upload that keeps moving (about 430 B/s, for
// longer than the 30 s window) completes.
func TestProcessSlowBodiesAreCutOnEveryListener(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t)
	backend := echoBackend(t)
	en := pc.writeEdgeConfig("web-1", backend.URL, "trusted_proxies: [127.0.0.0/8]")
	cluster, local := addrsOf(t, filepath.Join(pc.dir, "web-1.yaml"))
	pc.start("web-1")
	testutil.Eventually(t, 20*time.Second, func() error {
		_, err := http.Get("http://" + local + "/healthz")
		return err
	})
	token := "process-test-token"
	api := "PUT /v1/maintenance HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\nContent-Type: application/json\r\n"
	edge := "POST /upload HTTP/1.1\r\nHost: moodle.test\r\nX-Forwarded-Proto: https\r\n"
	listeners := []listener{
		{"cluster API", cluster, true, api},
		{"local API", local, false, api},
		{"edge https", en.https, true, edge},
		{"edge http", en.http, false, edge},
	}
	const steadyBytes = 16 << 10 // leading spaces, then the JSON: every byte is read
	body := strings.Repeat(" ", steadyBytes-len(`{"enabled":false}`)) + `{"enabled":false}`
	var wg sync.WaitGroup
	for _, l := range listeners {
		wg.Go(func() {
			start := time.Now()
			c := l.post(t, 200000)
			if c == nil {
				return
			}
			defer c.Close()
			go func() {
				for range 30 { // 150 s at most: long past any cut
					if _, err := c.Write([]byte("x")); err != nil {
						return
					}
					time.Sleep(5 * time.Second)
				}
			}()
			c.SetReadDeadline(time.Now().Add(75 * time.Second))
			_, err := io.Copy(io.Discard, c)
			took := time.Since(start)
			if ne, ok := err.(net.Error); ok && ne.Timeout() || took > time.Minute {
				t.Errorf("%s: a trickling body held its connection for %s", l.name, took.Round(time.Second))
				return
			}
			t.Logf("%s: trickling connection closed after %s", l.name, took.Round(time.Second))
		})
		wg.Go(func() {
			start := time.Now()
			c := l.post(t, len(body))
			if c == nil {
				return
			}
			defer c.Close()
			for sent := 0; sent < len(body); sent += 512 {
				if _, err := io.WriteString(c, body[sent:min(sent+512, len(body))]); err != nil {
					t.Errorf("%s: steady upload cut after %s: %v", l.name, time.Since(start).Round(time.Second), err)
					return
				}
				time.Sleep(1200 * time.Millisecond)
			}
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Errorf("%s: steady upload after %s: %v", l.name, time.Since(start).Round(time.Second), err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || strings.HasPrefix(l.name, "edge") && string(b) != fmt.Sprintf("read %d", len(body)) {
				t.Errorf("%s: steady upload answered %d %s", l.name, resp.StatusCode, b)
			}
			t.Logf("%s: steady upload of %d bytes took %s", l.name, len(body), time.Since(start).Round(time.Second))
		})
	}
	wg.Wait()
}

// TestProcessDirectorySwapRaceNeverPublishesOutsideFiles: while publishes
// run, a directory of the source keeps being exchanged with a symlink to a
// directory outside it (what a web user who may install plugins can do).
// No revision ever holds an outside file.
func TestProcessDirectorySwapRaceNeverPublishesOutsideFiles(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t)
	outside := filepath.Join(pc.dir, "outside")
	secrets := map[string]bool{}
	for i := range 100 {
		data := fmt.Sprintf("SECRET %d %s", i, strings.Repeat("s", i*37))
		writeFile(t, filepath.Join(outside, fmt.Sprintf("f%03d.php", i)), data, 0o644)
		sum := sha256.Sum256([]byte(data))
		secrets[hex.EncodeToString(sum[:])] = true
	}
	writeFile(t, filepath.Join(pc.source, "index.php"), "<?php", 0o644)
	plugin, link := filepath.Join(pc.source, "plugin"), filepath.Join(pc.dir, "link")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	pc.writeConfig("controller", "controller")
	pc.start("controller")

	const rounds = 40
	published, refused := 0, 0
	reasons := map[string]int{}
	for round := range rounds {
		// New content inside, so that every publish reads the directory.
		for i := range 100 {
			writeFile(t, filepath.Join(plugin, fmt.Sprintf("f%03d.php", i)), fmt.Sprintf("inside %d %d", round, i), 0o644)
		}
		stop, swapped := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(swapped)
			n := 0
			for {
				select {
				case <-stop:
					if n%2 == 1 { // leave the real directory in place
						unix.Renameat2(unix.AT_FDCWD, link, unix.AT_FDCWD, plugin, unix.RENAME_EXCHANGE)
					}
					return
				default:
				}
				if err := unix.Renameat2(unix.AT_FDCWD, link, unix.AT_FDCWD, plugin, unix.RENAME_EXCHANGE); err == nil {
					n++
				}
				// Mostly the real directory (the scan sees it), at times
				// the symlink (for the reads that follow).
				if n%2 == 1 {
					time.Sleep(time.Duration(100+round*10) * time.Microsecond)
				} else {
					time.Sleep(time.Duration(500+round*50) * time.Microsecond)
				}
			}
		}()
		out, err := pc.cli("publish", "-m", fmt.Sprint(round))
		close(stop)
		<-swapped
		if err == nil {
			published++
			checkNoSecrets(t, pc, secrets) // now: older revisions are collected
		} else {
			refused++
			for _, why := range []string{"tree changed", "is absolute", "too many levels of symbolic links", "no longer"} {
				if strings.Contains(out, why) {
					reasons[why]++
				}
			}
		}
	}
	t.Logf("%d rounds: %d published, %d refused %v", rounds, published, refused, reasons)
}

// checkNoSecrets fails if a manifest the controller keeps holds the
// content of a secret (by SHA-256).
func checkNoSecrets(t *testing.T, pc *procCluster, secrets map[string]bool) {
	t.Helper()
	manifests, _ := filepath.Glob(filepath.Join(pc.dataDir("controller"), "mirror", "manifests", "*.json"))
	if len(manifests) == 0 {
		t.Fatal("no manifest on disk after a publish: the check would prove nothing")
	}
	for _, p := range manifests {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`"sha256":"([0-9a-f]{64})"`).FindAllSubmatch(b, -1) {
			if secrets[string(m[1])] {
				t.Fatalf("revision %s holds a file from outside the source", filepath.Base(p))
			}
		}
	}
}

// looseSource writes a tree with the modes Moodle and chmod -R 777 leave.
func looseSource(t *testing.T, root, version string) {
	t.Helper()
	for _, d := range []struct {
		p    string
		mode os.FileMode
	}{{"cache", 0o2777}, {"lib", 0o777}, {"lib/sub", 0o775}} {
		if err := os.MkdirAll(filepath.Join(root, d.p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(root, d.p), d.mode); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, "cache/x.php"), "x", 0o666)
	writeFile(t, filepath.Join(root, "lib/a.php"), "<?php // a", 0o666)
	writeFile(t, filepath.Join(root, "lib/sub/b.php"), "<?php // b", 0o644)
	writeFile(t, filepath.Join(root, "version.php"), "<?php $version = "+version+";", 0o644)
}

// groupWritable lists the entries of the tree under root that group or
// others may write (symlinks aside).
func groupWritable(t *testing.T, root string) []string {
	t.Helper()
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	filepath.Walk(real, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeSymlink == 0 && fi.Mode().Perm()&0o022 != 0 {
			bad = append(bad, strings.TrimPrefix(p, real)+" "+fi.Mode().String())
		}
		return err
	})
	return bad
}

// TestProcessReleasesNobodyCanAlter: a tree with 0777 and 02777
// directories and 0666 files syncs to a release nobody but the agent may
// write; files planted in or replaced in a release (by root, who may)
// never reach a later release, whether it links from that release or
// recycles it.
func TestProcessReleasesNobodyCanAlter(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t)
	looseSource(t, pc.source, "1")
	pc.writeConfig("controller", "controller")
	pc.writeConfig("web-1", "web")
	pc.start("controller")
	pc.start("web-1")
	pc.publish("v1")
	pc.converged("web-1")
	if bad := groupWritable(t, pc.target("web-1")); len(bad) > 0 {
		t.Fatalf("writable by group or others in the release: %v", bad)
	}
	v1, err := filepath.EvalSymlinks(pc.target("web-1"))
	if err != nil {
		t.Fatal(err)
	}
	plant := func() {
		writeFile(t, filepath.Join(v1, "shell.php"), "<?php system($_GET['c']);", 0o644)
		writeFile(t, filepath.Join(v1, "lib/sub/planted.php"), "planted", 0o644)
		os.Remove(filepath.Join(v1, "lib/a.php"))
		writeFile(t, filepath.Join(v1, "lib/a.php"), "<?php // A", 0o444) // same size, another inode
	}
	plant()
	for _, v := range []string{"2", "3", "4"} { // 2 links from v1; 4 recycles it (keep: 3)
		writeFile(t, filepath.Join(pc.source, "version.php"), "<?php $version = "+v+";", 0o644)
		pc.publish("v" + v)
		pc.converged("web-1")
		if v == "2" {
			plant() // again, for the recycling
		}
		if bad := groupWritable(t, pc.target("web-1")); len(bad) > 0 {
			t.Fatalf("v%s: writable by group or others: %v", v, bad)
		}
	}
	cur, _ := filepath.EvalSymlinks(pc.target("web-1"))
	if _, err := os.Stat(v1); err == nil || filepath.Base(cur) == filepath.Base(v1) {
		t.Fatalf("v1 (%s) still kept or served: it was not recycled", filepath.Base(v1))
	}
	quarantined, _ := filepath.Glob(filepath.Join(pc.dataDir("web-1"), "mirror", "quarantine", "*", "shell.php"))
	if len(quarantined) == 0 {
		t.Error("shell.php is not in the quarantine")
	}
}

// readyz returns the readiness of the agent whose local API is at local.
func readyz(local string) (status string, checks map[string][]struct {
	Status string `json:"status"`
	Output string `json:"output"`
}, err error) {
	resp, err := http.Get("http://" + local + "/readyz")
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	var h struct {
		Status string `json:"status"`
		Checks map[string][]struct {
			Status string `json:"status"`
			Output string `json:"output"`
		} `json:"checks"`
	}
	err = json.NewDecoder(resp.Body).Decode(&h)
	return h.Status, h.Checks, err
}

// TestProcessIntegrityMonitor: tampering with the served release (a file
// replaced, one removed, one planted) is found by the background audit,
// which makes /readyz warn (never fail); `verify` names each difference and
// exits 1; `verify -repair` puts the published content back without a
// switch; `verify` then exits 0 and /readyz passes again.
func TestProcessIntegrityMonitor(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t)
	writeRandomTree(t, pc.source, 200, 5000, 12)
	pc.writeConfig("controller", "controller")
	webCfg := pc.writeConfig("web-1", "web")
	setMirrorOption(t, webCfg, "audit: {check_interval: 1s}")
	_, local := addrsOf(t, webCfg)
	pc.start("controller")
	pc.start("web-1")
	pc.publish("v1")
	pc.converged("web-1")
	testutil.Eventually(t, 20*time.Second, func() error {
		if status, checks, err := readyz(local); err != nil || status != "pass" || len(checks["mirror:integrity"]) != 1 {
			return fmt.Errorf("readyz %s %v %v", status, checks, err)
		}
		return nil
	})
	release, _ := filepath.EvalSymlinks(pc.target("web-1"))

	tampered, missing := "mod03/sub3/file0003.php", "mod04/sub4/file0004.php"
	os.Remove(filepath.Join(release, tampered))
	writeFile(t, filepath.Join(release, tampered), "<?php system($_GET['c']);", 0o444)
	if err := os.Remove(filepath.Join(release, missing)); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(release, "mod05/shell.php"), "<?php eval($_POST['x']);", 0o644)

	testutil.Eventually(t, 30*time.Second, func() error {
		status, checks, err := readyz(local)
		if err != nil || status != "warn" || len(checks["mirror:integrity"]) != 1 ||
			checks["mirror:integrity"][0].Status != "warn" || !strings.Contains(checks["mirror:integrity"][0].Output, "3 places") {
			return fmt.Errorf("readyz %s %v %v", status, checks, err)
		}
		return nil
	})
	if text := metricsText(t, local); !strings.Contains(text, `nodeagent_integrity_differences{kind="tampered"} 1`) ||
		!strings.Contains(text, `nodeagent_integrity_differences{kind="extra"} 1`) {
		t.Errorf("metrics do not show the differences:\n%s", grepLines(text, "nodeagent_integrity"))
	}
	if out, err := pc.nodeCLI(local, "status"); err != nil || !strings.Contains(out, "integrity: 3 differences") {
		t.Errorf("status: %v\n%s", err, out)
	}

	out, err := pc.nodeCLI(local, "verify")
	if code := exitCode(err); code != 1 {
		t.Fatalf("verify exit %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{"tampered  " + tampered, "missing   " + missing, "extra     mod05/shell.php", "3 differences"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify does not say %q:\n%s", want, out)
		}
	}

	out, err = pc.nodeCLI(local, "verify", "-repair")
	if code := exitCode(err); code != 0 || !strings.Contains(out, "repaired 3") {
		t.Fatalf("verify -repair exit %d:\n%s", code, out)
	}
	if cur, _ := filepath.EvalSymlinks(pc.target("web-1")); cur != release {
		t.Fatalf("repair switched the target: %s, was %s", cur, release)
	}
	if out, err := pc.nodeCLI(local, "verify"); exitCode(err) != 0 || !strings.Contains(out, "matches its manifest") {
		t.Fatalf("verify after the repair: %v\n%s", err, out)
	}
	pc.converged("web-1")
	testutil.Eventually(t, 30*time.Second, func() error {
		if status, checks, err := readyz(local); err != nil || status != "pass" {
			return fmt.Errorf("readyz %s %v %v", status, checks, err)
		}
		return nil
	})
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func grepLines(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestProcessOneAddressCannotFillTheClusterAPI: an address that opens
// connection after connection to the cluster API (each held with a body
// that never comes) gets 32 at most; a load balancer's probe from another
// address is answered meanwhile.
func TestProcessOneAddressCannotFillTheClusterAPI(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t)
	writeFile(t, filepath.Join(pc.source, "index.php"), "<?php", 0o644)
	cluster, local := addrsOf(t, pc.writeConfig("controller", "controller"))
	pc.start("controller")
	testutil.Eventually(t, 20*time.Second, func() error {
		_, err := http.Get("http://" + local + "/healthz")
		return err
	})
	attacker := &net.TCPAddr{IP: net.IPv4(127, 0, 2, 1)}
	held, refused := 0, 0
	for range 60 {
		d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: attacker}
		c, err := tls.DialWithDialer(d, "tcp", cluster, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			refused++ // closed during the handshake
			continue
		}
		defer c.Close()
		// A body that never comes: held for the 30 s a body gets.
		fmt.Fprintf(c, "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
		held++
	}
	if refused < 60-32 {
		t.Fatalf("%d connections from one address taken, %d refused; want at most 32 taken", held, refused)
	}
	probe := &net.TCPAddr{IP: net.IPv4(127, 0, 2, 2)}
	if status, err := rawRequest(cluster, &tls.Config{InsecureSkipVerify: true}, probe, "GET"); err != nil || !strings.Contains(status, " 200 ") {
		t.Fatalf("a probe from another address: %q %v", status, err)
	}
	t.Logf("one address: %d connections held, %d refused; another address answered", held, refused)
}

package mirror_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/mirror"
)

// The sync benchmarks publish the benchmark tree (see store_bench_test.go)
// with a Store, serve it over loopback TLS, and time a web node's Apply:
//
//	go test -run '^$' -bench Sync -benchtime 3x ./internal/mirror/

// benchController publishes src and serves it over TLS.
func benchController(b *testing.B, src string) (*mirror.Store, *httptest.Server, mirror.Revision) {
	b.Helper()
	st := openBenchStore(b, b.TempDir(), src)
	b.Cleanup(func() { st.Close() })
	rev, _, err := st.Publish(context.Background(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewTLSServer(st.Handler())
	b.Cleanup(srv.Close)
	return st, srv, rev
}

// benchKeep is the default of mirror.keep.
const benchKeep = 5

func benchReleases(b *testing.B, dir string) *mirror.Releases {
	b.Helper()
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("MIRROR_BENCH_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	rels := mirror.NewReleases(mirror.ReleasesConfig{
		Dir: filepath.Join(dir, "mirror"), Target: filepath.Join(dir, "www", "moodle"), Keep: benchKeep, Logger: log,
	})
	if err := rels.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	return rels
}

// BenchmarkSyncInitial applies the whole tree to an empty web node. It
// reports the peak Go heap of the process (controller included).
func BenchmarkSyncInitial(b *testing.B) {
	src := benchTree(b)
	_, srv, rev := benchController(b, src)
	client := mirror.NewClient(srv.URL, srv.Client())
	root := b.TempDir()
	peak := sampleHeap(b)
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		dir := filepath.Join(root, strconv.Itoa(i))
		rels := benchReleases(b, dir)
		runtime.GC()
		b.StartTimer()
		if err := rels.Apply(context.Background(), rev, client); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(dir)
		b.StartTimer()
	}
	b.ReportMetric(float64(rev.Files), "files")
	b.ReportMetric(float64(rev.Bytes)/1e6, "MB")
	b.ReportMetric(float64(peak())/1e6, "peak-heap-MB")
}

// BenchmarkSyncOneChange applies a revision that differs from the current
// one by one file, in the steady state: Keep releases are kept already.
func BenchmarkSyncOneChange(b *testing.B) {
	rels, client, publish := oneChangeBench(b, false)
	ctx := context.Background()
	var cpu time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		rev := publish(i)
		b.StartTimer()
		c0 := processCPU()
		if err := rels.Apply(ctx, rev, client); err != nil {
			b.Fatal(err)
		}
		cpu += processCPU() - c0
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkSyncOneChangeSpare is BenchmarkSyncOneChange as an idle web
// node meets it: with the warm spare of the current release made.
func BenchmarkSyncOneChangeSpare(b *testing.B) {
	rels, client, publish := oneChangeBench(b, true)
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		rev := publish(i)
		b.StartTimer()
		if err := rels.Apply(ctx, rev, client); err != nil {
			b.Fatal(err)
		}
	}
}

// oneChangeBench syncs a web node to the benchmark tree and Keep
// one-file changes of it, and returns the node and a function that
// publishes the i-th change (then makes the node's spare, if spare).
func oneChangeBench(b *testing.B, spare bool) (*mirror.Releases, *mirror.Client, func(i int) mirror.Revision) {
	src := benchTree(b)
	st, srv, rev := benchController(b, src)
	client := mirror.NewClient(srv.URL, srv.Client())
	rels := benchReleases(b, b.TempDir())
	ctx := context.Background()
	if err := rels.Apply(ctx, rev, client); err != nil {
		b.Fatal(err)
	}
	edit := filepath.Join(src, firstFile(b, src))
	publish := func(i int) mirror.Revision {
		if err := os.WriteFile(edit, editContent(i), 0o644); err != nil {
			b.Fatal(err)
		}
		rev, _, err := st.Publish(ctx, "one change")
		if err != nil {
			b.Fatal(err)
		}
		if spare {
			st.WaitCollected()
			if err := rels.PrepareSpare(ctx); err != nil {
				b.Fatal(err)
			}
			runtime.GC()
		}
		return rev
	}
	for i := range benchKeep { // b.Loop times what follows only
		if err := rels.Apply(ctx, publish(-1-i), client); err != nil {
			b.Fatal(err)
		}
	}
	return rels, client, publish
}

// BenchmarkSyncBaselineRsyncCopy: rsync -a src/ into an empty directory.
func BenchmarkSyncBaselineRsyncCopy(b *testing.B) {
	src := benchTree(b)
	root := b.TempDir()
	for i := 0; b.Loop(); i++ {
		dst := filepath.Join(root, strconv.Itoa(i))
		runShell(b, src, "rsync -a ./ "+dst+"/")
		b.StopTimer()
		os.RemoveAll(dst)
		b.StartTimer()
	}
}

// BenchmarkSyncMemory applies the whole tree in a child process (the test
// binary running TestSyncChildProcess) and reports the child's peak RSS:
// the web node's memory without the controller's. With
// MIRROR_BENCH_SCALE=3 the tree has 52k files.
func BenchmarkSyncMemory(b *testing.B) {
	src := benchTree(b)
	_, srv, rev := benchController(b, src)
	root := b.TempDir()
	var peakKB, spareKB int
	for i := 0; b.Loop(); i++ {
		spec, _ := json.Marshal(childSpec{
			URL: srv.URL, ID: rev.ID, Dir: filepath.Join(root, strconv.Itoa(i)),
			CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}),
		})
		cmd := exec.Command(os.Args[0], "-test.run=^TestSyncChildProcess$", "-test.v")
		cmd.Env = append(os.Environ(), "MIRROR_SYNC_CHILD="+string(spec))
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("child: %v\n%s", err, out)
		}
		if os.Getenv("MIRROR_CHILD_PHASES") != "" {
			b.Logf("child:\n%s", out)
		}
		m := regexp.MustCompile(`VmHWM_KB=(\d+)`).FindSubmatch(out)
		if m == nil {
			b.Fatalf("child printed no VmHWM:\n%s", out)
		}
		kb, _ := strconv.Atoi(string(m[1]))
		peakKB = max(peakKB, kb)
		if m := regexp.MustCompile(`SpareHWM_KB=(\d+)`).FindSubmatch(out); m != nil {
			kb, _ := strconv.Atoi(string(m[1]))
			spareKB = max(spareKB, kb)
		}
		b.StopTimer()
		os.RemoveAll(filepath.Join(root, strconv.Itoa(i)))
		b.StartTimer()
	}
	b.ReportMetric(float64(rev.Files), "files")
	b.ReportMetric(float64(peakKB)/1024, "peak-rss-MB")
	b.ReportMetric(float64(spareKB)/1024, "spare-peak-rss-MB")
}

// childSpec tells TestSyncChildProcess what to apply.
type childSpec struct {
	URL, ID, Dir string
	CertPEM      []byte
}

// TestSyncChildProcess is the web node of BenchmarkSyncMemory; it skips
// unless run by it.
func TestSyncChildProcess(t *testing.T) {
	env := os.Getenv("MIRROR_SYNC_CHILD")
	if env == "" {
		t.Skip("helper process of BenchmarkSyncMemory")
	}
	var spec childSpec
	if err := json.Unmarshal([]byte(env), &spec); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(spec.CertPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	rels := mirror.NewReleases(mirror.ReleasesConfig{
		Dir: filepath.Join(spec.Dir, "mirror"), Target: filepath.Join(spec.Dir, "www", "moodle"),
	})
	ctx := context.Background()
	if err := rels.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("MIRROR_CHILD_PHASES") != "" {
		go func() { // the peak heap of each phase
			peaks := map[string]uint64{}
			s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/total:bytes"}}
			last := ""
			for {
				metrics.Read(s)
				ph := rels.Progress().Phase
				peaks[ph+" heap"] = max(peaks[ph+" heap"], s[0].Value.Uint64()>>20)
				peaks[ph+" total"] = max(peaks[ph+" total"], s[1].Value.Uint64()>>20)
				if ph != last {
					fmt.Println("peaks MB", peaks)
					last = ph
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	if p := os.Getenv("MIRROR_CHILD_HEAPPROF"); p != "" {
		go func() { // a heap profile in the middle of the download
			for {
				if pr := rels.Progress(); pr.Phase == mirror.PhaseFetch && pr.BytesDone > pr.Bytes/2 {
					f, _ := os.Create(p)
					pprof.WriteHeapProfile(f)
					f.Close()
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	if err := rels.Apply(ctx, mirror.Revision{Seq: 1, ID: spec.ID}, mirror.NewClient(spec.URL, hc)); err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(status)
	if m == nil {
		t.Fatal("no VmHWM in /proc/self/status")
	}
	fmt.Printf("VmHWM_KB=%s\n", m[1])
	// Then the warm spare the idle node makes, from a fresh peak (writing
	// 5 to clear_refs resets VmHWM), as the agent's syncer does after a
	// sync has given its memory back.
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatal(err)
	}
	status, _ = os.ReadFile("/proc/self/status")
	if m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(status); m != nil {
		fmt.Printf("before the spare: VmRSS %s kB\n", m[1])
	}
	if err := rels.PrepareSpare(ctx); err != nil {
		t.Fatal(err)
	}
	status, _ = os.ReadFile("/proc/self/status")
	if m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(status); m != nil {
		fmt.Printf("SpareHWM_KB=%s\n", m[1])
	}
}

// sampleHeap samples the live heap every few milliseconds until the
// benchmark ends; the returned function gives the peak.
func sampleHeap(b *testing.B) func() uint64 {
	var mu sync.Mutex
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			metrics.Read(s)
			mu.Lock()
			peak = max(peak, s[0].Value.Uint64())
			mu.Unlock()
		}
	})
	b.Cleanup(func() { close(done); wg.Wait() })
	return func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

package dump_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/dump"
	"github.com/nodeagent/nodeagent/internal/dump/dbtest"
)

// BenchmarkDumpVsTool compares the agent's verified dump (temporary file,
// tool, fsync, SHA-256, read-back check, rename, sidecar) with running the
// same tool by hand into a file (pg_dump -Fc -f FILE; mysqldump | gzip >
// FILE), on generated databases of DUMP_BENCH_MB megabytes (default
// "100,1000"), alternating DUMP_BENCH_RUNS times (default 2). It reports
// the best seconds of each (the CPU is shared), their ratio and the peak Go heap and peak
// RSS of the process during the agent's dump:
//
//	go test -run '^$' -bench DumpVsTool -benchtime 1x -timeout 2h ./internal/dump/
func BenchmarkDumpVsTool(b *testing.B) {
	sizes := envInts(b, "DUMP_BENCH_MB", "100,1000")
	runs := envInts(b, "DUMP_BENCH_RUNS", "2")[0]
	for _, eng := range engines {
		b.Run(eng.name, func(b *testing.B) {
			e := newBenchEnv(b, eng.start)
			for _, mb := range sizes {
				db := fmt.Sprintf("bench%d", mb)
				e.srv.CreateDB(b, db, "moodle")
				start := time.Now()
				e.srv.LoadMoodle(b, db, "moodle", 1000)
				e.srv.Fill(b, db, "moodle", mb)
				b.Logf("%s: generated %s (%d MB of rows) in %s", eng.name, db, mb, time.Since(start).Round(time.Second))
				cfg := e.db
				cfg.Name, cfg.Keep = db, 1
				logs := &syncBuffer{}
				d := dump.New(dump.Config{DB: cfg, NoSchedule: true, Logger: slog.New(slog.NewTextHandler(logs, nil))})
				if err := d.Open(context.Background()); err != nil {
					b.Fatal(err)
				}
				e.byHand(b, db) // warm the caches for both
				var tool, agent []float64
				var size int64
				var heap, rss uint64
				for i := 0; i < runs*b.N; i++ {
					tool = append(tool, e.byHand(b, db))
					runtime.GC()
					debug.FreeOSMemory()
					resetPeakRSS(b)
					stop := sampleHeap(&heap)
					t0 := time.Now()
					rec, err := d.Dump(context.Background(), dump.TriggerRequest)
					agent = append(agent, time.Since(t0).Seconds())
					stop()
					if err != nil {
						b.Fatal(err)
					}
					size, rss = rec.Size, max(rss, peakRSS(b))
				}
				d.Close()
				ts, as := slices.Min(tool), slices.Min(agent) // best of runs: the CPU is shared
				b.Logf("| %s | %d MB | %.1f MB | %.2f s | %.2f s | %.2f | %.1f MB | %.1f MB |",
					eng.name, mb, float64(size)/1e6, ts, as, as/ts, float64(heap)/1e6, float64(rss)/1e6)
				for _, line := range strings.Split(logs.String(), "\n") {
					if strings.Contains(line, "dump checked") {
						b.Logf("  %s", line[strings.Index(line, "tool_seconds"):])
					}
				}
				b.ReportMetric(as/ts, fmt.Sprintf("ratio_%dMB", mb))
				b.ReportMetric(float64(heap)/1e6, fmt.Sprintf("peakheapMB_%dMB", mb))
			}
		})
	}
}

func newBenchEnv(b *testing.B, start func(testing.TB) *dbtest.Server) *env {
	b.Helper()
	e := &env{srv: start(b), password: "bench-" + randHex(8), logs: &syncBuffer{}}
	e.srv.CreateUser(b, "moodle", e.password)
	dir := b.TempDir()
	pwFile := filepath.Join(dir, "db.password")
	if err := os.WriteFile(pwFile, []byte(e.password), 0o600); err != nil {
		b.Fatal(err)
	}
	e.db = e.dbConfig(pwFile, filepath.Join(dir, "dumps"))
	return e
}

// byHand runs the dump tool the way a cron line does and returns seconds.
func (e *env) byHand(b *testing.B, db string) float64 {
	b.Helper()
	dir := b.TempDir()
	out := filepath.Join(dir, "by-hand")
	var cmd *exec.Cmd
	port := strconv.Itoa(e.db.Port)
	if e.db.Driver == "postgres" {
		pass := filepath.Join(dir, "pgpass")
		os.WriteFile(pass, []byte("*:*:*:moodle:"+e.password+"\n"), 0o600)
		cmd = exec.Command("pg_dump", "-w", "-h", e.db.Host, "-p", port, "-U", "moodle", "-Fc", "-f", out, db)
		cmd.Env = append(os.Environ(), "PGPASSFILE="+pass)
	} else {
		cnf := filepath.Join(dir, "my.cnf")
		os.WriteFile(cnf, []byte("[client]\nuser=moodle\npassword=\""+e.password+"\"\n"), 0o600)
		cmd = exec.Command("sh", "-c", `mysqldump --defaults-extra-file="$1" --host="$2" --port="$3" --protocol=TCP --single-transaction --routines --triggers "$4" | gzip > "$5"`,
			"sh", cnf, e.db.Host, port, db, out)
	}
	t0 := time.Now()
	if o, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("by hand: %v: %s", err, o)
	}
	took := time.Since(t0).Seconds()
	os.RemoveAll(dir) // as the agent keeps one dump: no pile of dirty pages
	return took
}

// sampleHeap records the peak of the Go heap in use until stop is called.
func sampleHeap(peak *uint64) (stop func()) {
	var done atomic.Bool
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var ms runtime.MemStats
		for !done.Load() {
			runtime.ReadMemStats(&ms)
			*peak = max(*peak, ms.HeapInuse)
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return func() { done.Store(true); <-finished }
}

// resetPeakRSS resets the process's VmHWM (Linux: clear_refs 5).
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("cannot reset peak RSS: %v", err)
	}
}

// peakRSS returns VmHWM in bytes.
func peakRSS(b *testing.B) uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func envInts(b *testing.B, key, def string) []int {
	s := os.Getenv(key)
	if s == "" {
		s = def
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("%s=%q: want positive integers separated by commas", key, s)
		}
		out = append(out, n)
	}
	return out
}

package mirror_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/mirror"
)

// BenchmarkAudit times the two checks of the served release on the
// benchmark tree (MIRROR_BENCH_SCALE=3: 52k files), page cache warm:
//
//	go test -run '^$' -bench Audit -benchtime 5x ./internal/mirror/
//
// bench/audit compares them with find and sha256sum -c.
func BenchmarkAudit(b *testing.B) {
	src := benchTree(b)
	_, srv, rev := benchController(b, src)
	rels := benchReleases(b, b.TempDir())
	ctx := context.Background()
	if err := rels.Apply(ctx, rev, mirror.NewClient(srv.URL, srv.Client())); err != nil {
		b.Fatal(err)
	}
	check := func(b *testing.B, f func() (mirror.VerifyReport, error)) {
		c0 := processCPU()
		for b.Loop() {
			rep, err := f()
			if err != nil || len(rep.Differences) > 0 {
				b.Fatalf("%v %v", err, rep.Differences)
			}
		}
		b.ReportMetric(float64((processCPU()-c0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
	b.Run("identity", func(b *testing.B) { check(b, func() (mirror.VerifyReport, error) { return rels.Inspect(ctx) }) })
	b.Run("content", func(b *testing.B) {
		b.SetBytes(rev.Bytes)
		check(b, func() (mirror.VerifyReport, error) { return rels.Verify(ctx, false, nil) })
	})
}

// processCPU is the user and system CPU time of this process so far: less
// disturbed than wall time by other load on the machine.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package progress_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/progress"
)

// clock is a fake clock the test moves.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

const mib = 1 << 20

func TestPlainLinesAreThrottledAndShowRateAndETA(t *testing.T) {
	var out strings.Builder
	c := &clock{t: time.Unix(1000, 0)}
	p := progress.New(&out, "sync", progress.Options{Every: 5 * time.Second, Now: c.now})
	p.Update(progress.Sample{Phase: "manifest"})
	p.Update(progress.Sample{Phase: "fetch", Files: 100, Bytes: 100 * mib})
	for i := 1; i <= 10; i++ { // 10 MiB/s for 10 s: two lines at most, 5 s apart
		c.t = c.t.Add(time.Second)
		p.Update(progress.Sample{Phase: "fetch", FilesDone: 10 * i, Files: 100, BytesDone: int64(10*i) * mib, Bytes: 100 * mib})
	}
	p.Done()
	got := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		"sync: manifest 0/0 files",
		"sync: fetch    0/100 files  0 B/100.0 MiB",
		"sync: fetch    50/100 files  50.0 MiB/100.0 MiB  10.0 MiB/s  ETA 5s",
		"sync: fetch    100/100 files  100.0 MiB/100.0 MiB  10.0 MiB/s",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if strings.Contains(out.String(), "\r") {
		t.Fatal("plain output contains carriage returns")
	}
}

func TestTerminalRewritesOneLine(t *testing.T) {
	var out strings.Builder
	c := &clock{t: time.Unix(1000, 0)}
	p := progress.New(&out, "publish", progress.Options{TTY: true, Now: c.now})
	p.Update(progress.Sample{Phase: "capture", Files: 4, Bytes: 4 * mib})
	c.t = c.t.Add(2 * time.Second)
	p.Update(progress.Sample{Phase: "capture", FilesDone: 1, Files: 4, BytesDone: mib, Bytes: 4 * mib})
	p.Done()
	want := "\r\033[Kpublish: capture  0/4 files  0 B/4.0 MiB" +
		"\r\033[Kpublish: capture  1/4 files  1.0 MiB/4.0 MiB  512.0 KiB/s  ETA 6s" +
		"\r\033[K"
	if out.String() != want {
		t.Fatalf("got %q\nwant %q", out.String(), want)
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 20 * mib: "20.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := progress.Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

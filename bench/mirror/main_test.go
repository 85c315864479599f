package main_test

// The benchmark is tested as a process, on a tiny tree: it must produce the
// whole report, and leave neither files nor processes behind, also when
// signalled.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/bench/internal/corpus"
)

var benchBin, agentBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bench-mirror-test-")
	if err != nil {
		panic(err)
	}
	benchBin = filepath.Join(dir, "bench-mirror")
	agentBin = filepath.Join(dir, "nodeagent")
	for bin, pkg := range map[string]string{benchBin: ".", agentBin: "../../cmd/nodeagent"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// tinyTSV writes a tree description of n files plus version.php.
func tinyTSV(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%d\tmod/m%d/lib%d.php\n", 100+i*97, i%5, i)
	}
	b.WriteString("1637\tversion.php\n")
	path := filepath.Join(t.TempDir(), "tiny.tsv")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// tinyCorpus writes a corpus cache whose pools hold a few files of each
// class, so the realistic corpus needs no download.
func tinyCorpus(t *testing.T) string {
	t.Helper()
	c := &corpus.Cache{Dir: t.TempDir()}
	for i, cl := range corpus.Classes {
		var files [][]byte
		for j := range 5 {
			files = append(files, []byte(strings.Repeat(fmt.Sprintf("<?php // %s file %d %d\n", cl, i, j), 20+j)))
		}
		if err := c.WritePool(cl, files); err != nil {
			t.Fatal(err)
		}
	}
	return c.Dir
}

func benchCmd(t *testing.T, work string, args ...string) *exec.Cmd {
	t.Helper()
	if _, err := exec.LookPath("rsync"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("no rsync (.ci/run installs it)")
		}
		t.Skip("no rsync")
	}
	base := []string{"-bin", agentBin, "-tsv", tinyTSV(t, 40), "-work", work, "-idle", "100ms", "-cache", tinyCorpus(t)}
	return exec.Command(benchBin, append(base, args...)...)
}

// leftovers returns what the benchmark left in work: files, and processes
// whose command line names work.
func leftovers(t *testing.T, work string) []string {
	t.Helper()
	var left []string
	entries, _ := os.ReadDir(work)
	for _, e := range entries {
		left = append(left, "file "+e.Name())
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if cmdline, err := os.ReadFile(p); err == nil && bytes.Contains(cmdline, []byte(work)) {
			left = append(left, "process "+string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		}
	}
	return left
}

func TestBenchReportsEveryMetric(t *testing.T) {
	work := t.TempDir()
	outFile := filepath.Join(t.TempDir(), "bench.md")
	cmd := benchCmd(t, work, "-scale", "1,2", "-runs", "1", "-changes", "2", "-out", outFile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	md := string(out)
	for _, want := range []string{"### Scale 1, random corpus: the Moodle 3.5 tree, pseudo-random bytes (41 files",
		"### Scale 1, real corpus: the Moodle 3.5 tree, real PHP/JS/CSS/images of Debian's php-* packages (41 files",
		"### Scale 2, random corpus: the synthetic 2x tree, pseudo-random bytes (82 files",
		"### Scale 2, real corpus: the synthetic 2x tree",
		"Command: `go run ./bench/mirror -bin", "Wire cost of a 1-file change beyond the file, by scale: 1x random"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	rows := map[string]*regexp.Regexp{
		"cold publish": regexp.MustCompile(`\| 1\. Cold publish \(CLI wall time\) \| [0-9.]+ m?s \| ` + "`sha256sum`" + ` of the tree: [0-9.]+ m?s \| [0-9.]+ \| ≤ 0\.5 \| (yes|\*\*no\*\*) \|`),
		"publish cpu":  regexp.MustCompile(`\| 1\. Cold publish, CPU time of the controller \| [0-9.]+ m?s \| .* \| [0-9.]+ \| ≤ 0\.7 \|`),
		"re-publish":   regexp.MustCompile(`\| 2\. Re-publish after a 1-file change \| [0-9.]+ m?s \| .*rsync.* \| [0-9.]+ \| ≤ 0\.1 s \|`),
		"initial sync": regexp.MustCompile(`\| 3\. Initial sync of an empty web node \| [0-9.]+ m?s \| .*rsync.* \| [0-9.]+ \| ≤ 0\.9 \|`),
		"sync wire":    regexp.MustCompile(`\| 3\. Wire bytes of the initial sync \| [0-9.]+ MB \| the tree: [0-9.]+ MB \| [0-9.]+ \|`),
		"serve":        regexp.MustCompile(`\| 4\. 1-file change: publish → both web nodes serve it, median \| [0-9.]+ m?s \|`),
		"serve p95":    regexp.MustCompile(`\| 4\. … p95 \(the first changes after the initial sync included\) \| [0-9.]+ m?s \|`),
		"wire":         regexp.MustCompile(`\| 5\. Wire bytes of the change beyond the file \(1637 B\) \| -?[0-9.]+ KiB \|`),
		"peak rss":     regexp.MustCompile(`\| 6\. Web agent peak RSS \(VmHWM\) over a full sync \| [1-9][0-9.]* MB \|`),
		"idle rss":     regexp.MustCompile(`\| 6\. Web agent idle RSS \(VmRSS 100ms after the sync\) \| [1-9][0-9.]* MB \|`),
		"requests":     regexp.MustCompile(`Initial sync: .*; [1-9][0-9]* mirror requests to the controller`),
	}
	for name, re := range rows {
		if got := len(re.FindAllString(md, -1)); got != 4 {
			t.Errorf("%s: %d matches of %s, want one per scale and corpus", name, got, re)
		}
	}
	if saved, err := os.ReadFile(outFile); err != nil || string(saved) != md {
		t.Errorf("-out file differs from the printed report: %v", err)
	}
	if left := leftovers(t, work); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

func TestBenchCleansUpWhenSignalled(t *testing.T) {
	work := t.TempDir()
	cmd := benchCmd(t, work, "-scale", "1", "-runs", "100", "-changes", "1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// Wait until a web agent runs, then signal.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m, _ := filepath.Glob(filepath.Join(work, "*", "scale1-*", "cold*", "web-1.log")); len(m) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no web agent started:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
	}
	if left := leftovers(t, work); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

func TestBenchRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-scale", "0"}, {"-scale", "x"}, {"-runs", "0"}, {"extra"}} {
		out, err := benchCmd(t, t.TempDir(), args...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
			t.Errorf("%v: exit %v, want an error\n%s", args, err, out)
		}
	}
}

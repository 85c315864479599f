package main_test

// The benchmark is tested as a process, on a tiny tree with two web nodes:
// it must produce the whole report, and leave neither files nor processes
// behind.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/internal/testutil/netlab"
)

var benchBin, agentBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bench-peers-test-")
	if err != nil {
		panic(err)
	}
	benchBin = filepath.Join(dir, "bench-peers")
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

// tinyTSV writes a tree description of n files.
func tinyTSV(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%d\tmod/m%d/lib%d.php\n", 1000+i*97, i%5, i)
	}
	path := filepath.Join(t.TempDir(), "tiny.tsv")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestBenchReportsTheTargets(t *testing.T) {
	netlab.Require(t, "tc")
	work := t.TempDir()
	outFile := filepath.Join(t.TempDir(), "bench.md")
	cmd := exec.Command(benchBin, "-bin", agentBin, "-tsv", tinyTSV(t, 200), "-work", work,
		"-web", "2", "-runs", "1", "-rate", "100mbit", "-out", outFile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	md := string(out)
	rows := map[string]*regexp.Regexp{
		"title":   regexp.MustCompile(`## Peer-assisted distribution: 2 new web nodes at once \(bench/peers\)`),
		"links":   regexp.MustCompile(`limited to 100mbit each way .* Tree: 200 files, 2\.1 MB`),
		"last":    regexp.MustCompile(`\| start → serving, last node \| [0-9.]+ s \| [0-9.]+ s \([0-9.]+x the anchor\) \| ≤ 2x: (met|\*\*missed\*\*) \|`),
		"egress":  regexp.MustCompile(`\| controller egress \| [0-9.]+x the tree \| [0-9.]+x the tree \| ≤ 2x: (met|\*\*missed\*\*) \|`),
		"peers":   regexp.MustCompile(`\| content from peers \| 0% \| [0-9]+% \| \|`),
		"anchor":  regexp.MustCompile(`- 1 node\(s\): [0-9.]+; egress [0-9.]+x; 0% from peers`),
		"2 nodes": regexp.MustCompile(`- 2 node\(s\): [0-9.]+ [0-9.]+; egress [0-9.]+x; [0-9]+% from peers`),
	}
	for name, re := range rows {
		if !re.MatchString(md) {
			t.Errorf("%s: no match of %s in\n%s", name, re, md)
		}
	}
	if saved, err := os.ReadFile(outFile); err != nil || string(saved) != md {
		t.Errorf("-out file differs from the printed report: %v", err)
	}
	if left, _ := os.ReadDir(work); len(left) > 0 {
		t.Errorf("left behind in the work directory: %v", left)
	}
	if mounts, err := os.ReadFile("/proc/self/mountinfo"); err != nil || bytes.Contains(mounts, []byte(work)) {
		t.Errorf("a mount left behind under %s (or mountinfo unreadable: %v)", work, err)
	}
	if !strings.Contains(md, "on a tmpfs") {
		t.Errorf("the report does not say the data was on a tmpfs:\n%s", md)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if cmdline, err := os.ReadFile(p); err == nil && bytes.Contains(cmdline, []byte(work)) {
			t.Errorf("left running: %s", bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		}
	}
}

func TestBenchRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-web", "1"}, {"-runs", "0"}, {"-scale", "0"}, {"extra"}} {
		out, err := exec.Command(benchBin, args...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
			t.Errorf("%v: exit %v, want an error\n%s", args, err, out)
		}
	}
}

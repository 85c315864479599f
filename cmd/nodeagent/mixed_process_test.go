package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/internal/mirror/mirrortest"
)

// uncompressedCommit is main before packs and the object stream were
// compressed (issue 13): the version a rolling upgrade starts from.
const uncompressedCommit = "a049b304b66dfa25081f1650a04e3897f52da4e1"

// buildAt builds nodeagent from the repository at commit, into a
// temporary directory, and returns the binary.
func buildAt(t *testing.T, commit string) string {
	t.Helper()
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil || exec.Command("git", "cat-file", "-e", commit+"^{commit}").Run() != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("commit %s is not in this checkout (a clone with history is needed): %v", commit, err)
		}
		t.Skipf("commit %s is not in this checkout", commit)
	}
	dir := t.TempDir()
	archive := exec.Command("sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh",
		strings.TrimSpace(string(top)), commit, dir)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("git archive %s: %v\n%s", commit, err, out)
	}
	bin := filepath.Join(dir, "nodeagent-old")
	build := exec.Command("go", "build", "-o", bin, "./cmd/nodeagent")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", commit, err, out)
	}
	return bin
}

// TestProcessMixedVersions runs a rolling upgrade's two halves with real
// binaries: a web node of the version before compression syncs from a new
// controller (which must send it raw objects), and a new web node syncs
// from an old controller (which sends what it always sent). Each syncs a
// tree of compressible and incompressible files, then a change.
func TestProcessMixedVersions(t *testing.T) {
	old := buildAt(t, uncompressedCommit)
	for _, tc := range []struct{ name, ctl, web string }{
		{"old web from new controller", binary, old},
		{"new web from old controller", old, binary},
		{"both upgraded in place", old, old},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := newProcCluster(t)
			code := strings.Repeat("<?php\n// Moodle-like code compresses well.\n$x = array(1, 2, 3);\n", 2000)
			writeFile(t, filepath.Join(pc.source, "lib/big.php"), code, 0o644)
			writeFile(t, filepath.Join(pc.source, "pix/i.png"), string(mirrortest.Content(nil, "png", 300<<10)), 0o644)
			writeRandomTree(t, pc.source, 200, 20000, 4)
			ctlConfig := pc.writeConfig("controller", "controller")
			if tc.ctl == old {
				// The old version knows no deploy section: its strict
				// config would refuse the key.
				withoutLine(t, ctlConfig, "deploy:")
			}
			pc.writeConfig("web-1", "web")
			pc.writeConfig("web-2", "web")
			pc.startBin("controller", tc.ctl)
			pc.startBin("web-1", tc.web)
			pc.publish("first")
			pc.converged("web-1")
			if tc.ctl == old && tc.web == old {
				// The new binaries take over the old data dirs: the
				// controller's uncompressed packs, the web node's releases.
				pc.stopAll()
				clear(pc.procs)
				pc.start("controller")
				pc.start("web-1")
				pc.start("web-2") // fetches all, much of it from old packs
				pc.converged("web-2")
			}
			writeFile(t, filepath.Join(pc.source, "lib/big.php"), code+"// changed\n", 0o644)
			writeFile(t, filepath.Join(pc.source, "lib/new.php"), code+"// new\n", 0o644)
			pc.publish("second")
			pc.converged("web-1")
			if _, ok := pc.procs["web-2"]; ok {
				pc.converged("web-2")
			}
		})
	}
}

// withoutLine removes from the file the lines that start with prefix.
func withoutLine(t *testing.T, name, prefix string) {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, prefix) {
			kept = append(kept, line)
		}
	}
	writeFile(t, name, strings.Join(kept, "\n"), 0o644)
}

package main_test

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/mirror/mirrortest"
)

// TestProcessWaitFollowsFirstSync: `wait`, started before the web agent,
// keeps asking until the agent answers, and returns once the node serves
// the target: the tree is there when it exits 0.
func TestProcessWaitFollowsFirstSync(t *testing.T) {
	pc := newProcCluster(t)
	writeRandomTree(t, pc.source, 200, 20000, 3)
	pc.writeConfig("controller", "controller")
	cfg, err := config.Load(pc.writeConfig("web-1", "web"))
	if err != nil {
		t.Fatal(err)
	}
	pc.start("controller")
	if out := pc.publish("first"); !strings.Contains(out, "published: seq 1") {
		t.Fatalf("publish output: %s", out)
	}

	wait := exec.Command(binary, "wait", "-addr", "http://"+cfg.API.Listen, "-token-file", pc.token,
		"-config", "/nonexistent", "-timeout", "90s")
	var stdout, stderr bytes.Buffer
	wait.Stdout, wait.Stderr = &stdout, &stderr
	if err := wait.Start(); err != nil {
		t.Fatal(err)
	}
	pc.start("web-1")
	if err := wait.Wait(); err != nil {
		t.Fatalf("wait: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "in sync: web-1 serves seq 1") {
		t.Fatalf("wait output: %q", stdout.String())
	}
	if d := mirrortest.DiffTrees(pc.source, pc.target("web-1")); d != nil {
		t.Fatalf("wait returned before the tree was served: %v", d)
	}
	if strings.Contains(stderr.String(), "\r") {
		t.Fatalf("progress rewrote lines on a pipe: %q", stderr.String())
	}
}

func TestProcessWaitTimesOut(t *testing.T) {
	pc := newProcCluster(t)
	out, err := exec.Command(binary, "wait", "-addr", "http://127.0.0.1:1", "-token-file", pc.token,
		"-config", "/nonexistent", "-timeout", "1s").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "not in sync after 1s") {
		t.Fatalf("wait with nothing answering: %v\n%s", err, out)
	}
}

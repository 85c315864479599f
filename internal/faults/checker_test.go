package faults_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/faults"
)

// TestCheckerSeesViolations: the invariants can fail. A release file
// changed behind the agent's back is not its manifest; every web node
// drained (each /readyz fails) while their edges serve is the state the
// load balancer must never see; a stray temporary file is found.
func TestCheckerSeesViolations(t *testing.T) {
	requireLab(t)
	c, err := startCluster(t, faults.Options{Webs: 2, Dir: t.TempDir()})
	closeCluster(t, &c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// A file of web-1's release, rewritten in place.
	dest, err := os.Readlink(c.Target("web-1"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dest, "rev.txt")
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("tampered\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, web := range c.Webs() {
		if err := c.Drain(ctx, web, true); err != nil {
			t.Fatal(err)
		}
	}
	k := c.StartChecker()
	waitViolation(t, k, "web-1: mirror.target names release")
	waitViolation(t, k, "/readyz fails on every web node while one serves")
	violations := k.Stop()
	t.Logf("violations seen: %q", violations)

	stray := filepath.Join(c.DataDir("web-2"), "mirror", "manifests", ".tmp-x.json-1")
	if err := os.WriteFile(stray, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitNoTemps(time.Second); err == nil || !strings.Contains(err.Error(), stray) {
		t.Errorf("a stray temporary file not found: %v", err)
	}
}

// waitViolation waits until k has seen a violation containing want.
func waitViolation(t *testing.T, k *faults.Checker, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, v := range k.Violations() {
			if strings.Contains(v, want) {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("no violation %q seen: %q", want, k.Violations())
}

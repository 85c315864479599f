package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// keyringCLI runs `nodeagent keyring ARGS` against the controller and
// returns its output and exit code.
func (pc *procCluster) keyringCLI(args ...string) (string, int) {
	pc.t.Helper()
	full := append([]string{"keyring", args[0], "-addr", "http://" + pc.ctlAPI, "-token-file", pc.token, "-config", "/nonexistent"}, args[1:]...)
	b, err := exec.Command(binary, full...).CombinedOutput()
	out := string(b)
	if ee, ok := err.(*exec.ExitError); ok {
		return out, ee.ExitCode()
	}
	if err != nil {
		pc.t.Fatal(err)
	}
	return out, 0
}

func keyFingerprint(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	k, err := gossip.ParseKey(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return gossip.Fingerprint(k)
}

// TestProcessKeyringRotation drives a rotation through the CLI on three
// agent processes: every member's answer is printed; a refused step, or a
// member that does not answer, fails the command; a literal key on the
// command line is refused without being echoed; content keeps flowing; a
// restarted member keeps the rotated keyring although its key file still
// holds the old key.
func TestProcessKeyringRotation(t *testing.T) {
	pc := newProcCluster(t)
	writeRandomTree(t, pc.source, 50, 2000, 4)
	for _, n := range []string{"controller", "web-1", "web-2"} {
		role := "web"
		if n == "controller" {
			role = "controller"
		}
		pc.writeConfig(n, role)
		pc.start(n)
	}
	pc.publish("first")
	pc.converged("web-1", "web-2")
	testutil.Eventually(t, 20*time.Second, func() error {
		out, code := pc.keyringCLI("list")
		if code != 0 || !strings.Contains(out, "web-1") || !strings.Contains(out, "web-2") {
			return &cliError{out}
		}
		return nil
	})

	oldFP := keyFingerprint(t, pc.key)
	newKey := filepath.Join(pc.dir, "gossip.key.new")
	out, err := exec.Command(binary, "keygen").Output()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, newKey, string(out), 0o600)
	newFP := keyFingerprint(t, newKey)

	out2, code := pc.keyringCLI("install", strings.TrimSpace(string(out)))
	if code != 2 || strings.Contains(out2, strings.TrimSpace(string(out))) {
		t.Fatalf("a key on the command line: exit %d\n%s", code, out2)
	}
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"install", newKey}, "install " + newFP + ": applied on 3 of 3 live members"},
		{[]string{"use", newKey}, "use " + newFP + ": applied on 3 of 3 live members"},
		{[]string{"remove", oldFP}, "remove " + oldFP + ": applied on 3 of 3 live members"},
	}
	for _, s := range steps {
		out, code := pc.keyringCLI(s.args...)
		if code != 0 || !strings.Contains(out, s.want) || len(regexp.MustCompile(`(?m)^(controller|web-1|web-2) +ok `).FindAllString(out, -1)) != 3 {
			t.Fatalf("keyring %v: exit %d\n%s", s.args, code, out)
		}
	}
	out1, code := pc.keyringCLI("list")
	if code != 0 || strings.Count(out1, "*"+newFP) != 3 || strings.Contains(out1, oldFP) {
		t.Fatalf("list after the rotation: exit %d\n%s", code, out1)
	}
	writeFile(t, filepath.Join(pc.source, "mod01/sub1/file0001.php"), "<?php // after the rotation", 0o644)
	pc.publish("second")
	pc.converged("web-1", "web-2")

	// Refused: the primary key cannot be removed; each member's answer shows.
	out1, code = pc.keyringCLI("remove", newFP)
	if code != 1 || !strings.Contains(out1, "primary key") || strings.Count(out1, " ok ") != 3 {
		t.Fatalf("remove the primary key: exit %d\n%s", code, out1)
	}

	// web-2 restarts with its key file unchanged (the old key): the
	// keyring in its data_dir wins, and it rejoins and syncs.
	pc.procs["web-2"].Process.Signal(syscall.SIGTERM)
	pc.procs["web-2"].Wait()
	delete(pc.procs, "web-2")
	pc.start("web-2")
	writeFile(t, filepath.Join(pc.source, "mod01/sub1/file0001.php"), "<?php // after the restart", 0o644)
	pc.publish("third")
	pc.converged("web-1", "web-2")

	// A member that does not answer fails the command, named with why.
	pc.procs["web-1"].Process.Signal(syscall.SIGSTOP)
	out1, code = pc.keyringCLI("list")
	pc.procs["web-1"].Process.Signal(syscall.SIGCONT)
	if code != 1 || !regexp.MustCompile(`(?m)^web-1 +FAILED `).MatchString(out1) {
		t.Fatalf("list with a member stopped: exit %d\n%s", code, out1)
	}
}

type cliError struct{ out string }

func (e *cliError) Error() string { return e.out }

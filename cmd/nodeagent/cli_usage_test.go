package main_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestProcessCLIMistakes: mistakes the CLI can see itself exit 2 (usage)
// before any call; a missing token names the config file it looked for.
func TestProcessCLIMistakes(t *testing.T) {
	exit := func(err error) int {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		return 0
	}
	out, err := exec.Command(binary, "db", "restore", "moodle-20261201T022200Z.dump", "-switch", "-host", "db2",
		"-addr", "http://127.0.0.1:1", "-token-file", "/nonexistent").CombinedOutput()
	if exit(err) != 2 || !strings.Contains(string(out), "-switch takes no dump NAME") {
		t.Errorf("db restore NAME -switch: exit %d\n%s", exit(err), out)
	}
	for _, args := range [][]string{{"rollback", "1", "2"}, {"rollback", "-force"}, {"maintenance", "on", "-moodle=maybe"},
		{"forget"}, {"forget", "web-3", "-prune"}} {
		out, err := exec.Command(binary, append(args, "-addr", "http://127.0.0.1:1", "-token-file", "/nonexistent")...).CombinedOutput()
		if exit(err) != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", args, exit(err), out)
		}
	}
	cfg := filepath.Join(t.TempDir(), "missing.yaml")
	cmd := exec.Command(binary, "status", "-config", cfg)
	cmd.Env = []string{"PATH=/usr/bin:/bin"} // no NODEAGENT_TOKEN
	out, err = cmd.CombinedOutput()
	if exit(err) != 1 || !strings.Contains(string(out), "no API token") || !strings.Contains(string(out), cfg) {
		t.Errorf("status without a token: exit %d\n%s", exit(err), out)
	}
}

package agent_test

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nodeagent/nodeagent/internal/api"
)

// TestDeployRunsAsWebUser: deploy -run runs as deploy.run_as, by default
// www-data, with its HOME and a clean environment, so files it creates
// belong to the web server (not root, as before).
func TestDeployRunsAsWebUser(t *testing.T) {
	www, err := user.Lookup("www-data")
	if err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI runs as root with a www-data user (Debian's base-passwd): user %v, euid %d", err, os.Geteuid())
		}
		t.Skipf("needs root and a www-data user: %v, euid %d", err, os.Geteuid())
	}
	t.Setenv("NODEAGENT_TEST_SECRET", "must-not-leak")
	c := newCluster(t)
	// www-data must reach the source tree, as it does /moodle/html/moodle.
	for _, d := range []string{filepath.Dir(c.dir), c.dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out, err := os.MkdirTemp("", "nodeagent-runas-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(out) })
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}
	c.ctl.Close()
	cfg := c.config("controller", "controller")
	cfg.Mirror.Source, cfg.Gossip.Join = c.source, nil
	cfg.Deploy.RunAs = "www-data" // the default, set back after the test helper's
	c.ctl = c.open(cfg, c.key)
	c.addWeb("web-1")
	c.publish("first")
	c.converged("web-1")

	who := filepath.Join(out, "who")
	d := runDeploy(t, c.ctl, map[string]any{"run": `id -un > ` + who + `; echo "$HOME" >> ` + who + `; env > ` + out + `/env`})
	if d.Status != api.DeploySucceeded {
		t.Fatalf("deploy: %+v", d)
	}
	b, err := os.ReadFile(who)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if err != nil || len(lines) != 2 || lines[0] != "www-data" || lines[1] != www.HomeDir {
		t.Fatalf("the command ran as %q (want www-data, HOME %s): %v", b, www.HomeDir, err)
	}
	fi, err := os.Stat(who)
	if err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(mustAtoi(t, www.Uid)) {
		t.Fatalf("%s belongs to uid %d, want www-data (%s): %v", who, fi.Sys().(*syscall.Stat_t).Uid, www.Uid, err)
	}
	env, _ := os.ReadFile(filepath.Join(out, "env"))
	if strings.Contains(string(env), "NODEAGENT_TEST_SECRET") || !strings.Contains(string(env), "PATH=") {
		t.Fatalf("the command's environment is not clean:\n%s", env)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

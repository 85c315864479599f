package packaging_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/loadtest"
	"github.com/nodeagent/nodeagent/internal/nspawn"
	"github.com/nodeagent/nodeagent/internal/systemdtest"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// TestSystemdRestartAndUpgrade boots Debian 12 under real systemd (252)
// in systemd-nspawn, installs the package as a web node behind which a
// backend answers, and while clients keep sending GETs, POSTs and a slow
// request through the edge and a load balancer probes /readyz:
// `systemctl restart nodeagent` three times, a re-exec in place (SIGUSR2),
// then a package upgrade to a higher version (dpkg -i, whose postinst
// restarts the unit). No request
// fails, none is refused, /readyz stays 200; the unit's fd store holds the
// four sockets. Then kill -9: a client that connects while the agent is
// dead is answered by the process systemd restarts. `systemctl stop`
// closes the sockets (a stopped agent refuses, as it should).
func TestSystemdRestartAndUpgrade(t *testing.T) {
	if why := nspawn.Available(); why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
	if testing.Short() {
		t.Skip("boots a container")
	}
	ctx := context.Background()
	site, debs := bootSite(t, ctx, "0.0.0+systemdtest1", "0.0.0+systemdtest2")
	if err := site.Install(ctx, debs[0]); err != nil {
		t.Fatal(err)
	}
	pid, err := site.WaitActive(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := site.StartController(ctx); err != nil {
		t.Fatal(err)
	}
	load, err := site.StartLoad(ctx, 4, 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := load.WaitProgress(loadtest.Summary{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := site.M.Output(ctx, "systemctl", "restart", "nodeagent"); err != nil {
			t.Fatal(err)
		}
		if pid, err = site.WaitActive(ctx, pid); err != nil {
			t.Fatal(err)
		}
		if sum, err = load.WaitProgress(sum); err != nil {
			t.Fatal(err)
		}
		t.Logf("restart %d: %+v", i+1, sum)
	}
	// SIGUSR2: a re-exec in place; systemd sees RELOADING=1, then READY=1
	// from the same PID.
	if _, err := site.M.Output(ctx, "systemctl", "kill", "-s", "USR2", "--kill-who=main", "nodeagent"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 2*time.Minute, func() error {
		out, _ := site.M.Output(ctx, "journalctl", "-u", "nodeagent", "-o", "cat", "--no-pager")
		if n := strings.Count(string(out), "listening on the socket kept across the restart"); n < 4*4 {
			return fmt.Errorf("%d sockets taken over, want 16 (3 restarts and the re-exec)", n)
		}
		if state, _ := site.Show(ctx, "ActiveState"); state != "active" {
			return fmt.Errorf("unit %s", state)
		}
		return nil
	})
	if now, _ := site.MainPID(ctx); now != pid {
		t.Errorf("re-exec: MainPID %d, want %d (the same process)", now, pid)
	}
	if sum, err = load.WaitProgress(sum); err != nil {
		t.Fatal(err)
	}
	if err := site.Install(ctx, debs[1]); err != nil {
		t.Fatal(err)
	}
	if pid, err = site.WaitActive(ctx, pid); err != nil {
		t.Fatal(err)
	}
	if sum, err = load.WaitProgress(sum); err != nil {
		t.Fatal(err)
	}
	sum, err = load.Stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("answered %d (p50 %s, p99 %s, max %s), slow %d, probes %d; failed %d (refused %d), slow failed %d, probes failed %d",
		sum.OK, sum.P50, sum.P99, sum.Max, sum.SlowOK, sum.ProbeOK, sum.Failed, sum.Refused, sum.SlowFailed, sum.ProbeFailed)
	if sum.Failed > 0 || sum.SlowFailed > 0 || sum.ProbeFailed > 0 {
		t.Errorf("clients saw failures across restarts and the upgrade:\n%s", strings.Join(sum.Errors, "\n"))
	}
	if out, _ := site.M.Output(ctx, "nodeagent", "version"); !strings.Contains(string(out), "0.0.0+systemdtest2") {
		t.Errorf("after the upgrade: %s", out)
	}
	if n, _ := site.Show(ctx, "NFileDescriptorStore"); n != "4" {
		t.Errorf("NFileDescriptorStore=%s, want 4 (edge.https, edge.http, cluster.listen, api.listen)", n)
	}

	// kill -9: the stored sockets outlive the process; systemd restarts it
	// after RestartSec and the waiting client is answered.
	if _, err := site.M.Output(ctx, "systemctl", "kill", "-s", "KILL", "nodeagent"); err != nil {
		t.Fatal(err)
	}
	if _, err := site.M.Output(ctx, "/usr/local/bin/loadhelper", "get", systemdtest.EdgeURL+"/"); err != nil {
		t.Errorf("a request while the agent was dead: %v", err)
	}
	if _, err := site.WaitActive(ctx, pid); err != nil {
		t.Fatal(err)
	}

	// stop: the unit ends, systemd closes the sockets.
	if _, err := site.M.Output(ctx, "systemctl", "stop", "nodeagent"); err != nil {
		t.Fatal(err)
	}
	if n, _ := site.Show(ctx, "NFileDescriptorStore"); n != "0" {
		t.Errorf("after stop NFileDescriptorStore=%s, want 0", n)
	}
	if _, err := site.M.Output(ctx, "/usr/local/bin/loadhelper", "get", systemdtest.EdgeURL+"/"); err == nil ||
		!strings.Contains(err.Error(), "connection refused") {
		t.Errorf("a request to a stopped agent: %v, want connection refused", err)
	}
}

// bootSite builds the packages at the given versions and the load helper,
// boots a machine and sets up the site in it (closed at the end).
func bootSite(t *testing.T, ctx context.Context, versions ...string) (*systemdtest.Site, []string) {
	t.Helper()
	repo, err := systemdtest.Repo()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var debs []string
	for _, v := range versions {
		deb, err := systemdtest.BuildDeb(ctx, repo, dir, v)
		if err != nil {
			t.Fatal(err)
		}
		debs = append(debs, deb)
	}
	helper := filepath.Join(dir, "loadhelper")
	if err := systemdtest.BuildHelper(ctx, repo, helper); err != nil {
		t.Fatal(err)
	}
	console := &strings.Builder{}
	root, err := nspawn.EnsureRoot(ctx, nspawn.DefaultCache(), testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	m, err := nspawn.Boot(ctx, root, filepath.Join(dir, "machine"), console)
	if err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, console)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := m.Output(context.Background(), "journalctl", "--no-pager", "-n", "150", "-u", "nodeagent", "-u", "controller")
			t.Logf("journal:\n%s", out)
		}
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	site, err := systemdtest.Setup(ctx, m, helper)
	if err != nil {
		t.Fatal(err)
	}
	return site, debs
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

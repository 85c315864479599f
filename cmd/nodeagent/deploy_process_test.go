package main_test

// The deploy workflow end to end: `nodeagent deploy` against a controller
// process with two web processes.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/mirror/mirrortest"
)

// newDeployCluster starts a controller and web-1, web-2 on 127.0.0.1 with a
// source tree, and waits until the controller sees both web nodes alive: a
// deploy only waits for the web nodes it knows.
func newDeployCluster(t *testing.T) *procCluster {
	t.Helper()
	pc := newProcCluster(t)
	writeRandomTree(t, pc.source, 200, 10000, 21)
	pc.writeConfig("controller", "controller")
	pc.writeConfig("web-1", "web")
	pc.writeConfig("web-2", "web")
	for _, n := range []string{"controller", "web-1", "web-2"} {
		pc.start(n)
	}
	pc.wholeCluster(30*time.Second, "web-1", "web-2")
	return pc
}

// deployStep matches a finished step line of `nodeagent deploy`: name,
// mark, seconds, detail.
func deployStep(name, mark string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(name) + ` +` + mark + ` +\d+\.\d\ds(  .*)?$`)
}

func maintenanceStatus(t *testing.T, pc *procCluster) string {
	t.Helper()
	// The subcommand comes before the flags, so not through pc.cli.
	out, err := exec.Command(binary, "maintenance", "status",
		"-addr", "http://"+pc.ctlAPI, "-token-file", pc.token, "-config", "/nonexistent").CombinedOutput()
	if err != nil {
		t.Fatalf("maintenance status: %v %s", err, out)
	}
	return string(out)
}

func TestDeployProcessMaintenanceAndRun(t *testing.T) {
	t.Parallel()
	pc := newDeployCluster(t)
	marker := filepath.Join(pc.dir, "ran")

	out, err := pc.cli("deploy", "-m", "release 1", "-maintenance", "-run", `pwd > `+marker+`; echo upgrade done`)
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	t.Logf("deploy output:\n%s", out)
	for _, name := range []string{"maintenance on", "publish", "wait for web nodes", "run", "maintenance off"} {
		if !deployStep(name, "ok").MatchString(out) {
			t.Errorf("no timed ok step %q in the output", name)
		}
	}
	for _, want := range []string{
		"2 web nodes apply maintenance",
		"2 web nodes serve revision 1",
		"upgrade done",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if !regexp.MustCompile(`(?m)^deploy \S+ succeeded in \d+\.\d\ds$`).MatchString(out) {
		t.Error("no final succeeded line with the time")
	}
	// The deploy waited for both: no polling here.
	for _, n := range []string{"web-1", "web-2"} {
		if d := mirrortest.DiffTrees(pc.source, pc.target(n)); d != nil {
			t.Errorf("%s after the deploy: %s", n, strings.Join(d, "; "))
		}
	}
	ran, err := os.ReadFile(marker)
	if err != nil {
		t.Fatalf("the -run command did not run: %v", err)
	}
	if got := strings.TrimSpace(string(ran)); got != pc.source {
		t.Errorf("the -run command ran in %q, want the source %q", got, pc.source)
	}
	if m := maintenanceStatus(t, pc); !strings.Contains(m, "maintenance: off") {
		t.Errorf("maintenance after the deploy:\n%s", m)
	}
}

// TestDeployProcessWebNodeKilled: a web node SIGKILLed once the deploy has
// started is not waited for once gossip declares it dead; with
// -allow-missing the deploy completes, names it, and the live node serves
// the new revision.
func TestDeployProcessWebNodeKilled(t *testing.T) {
	t.Parallel()
	pc := newDeployCluster(t)
	pc.publish("first")
	pc.converged("web-1", "web-2")
	writeRandomTree(t, pc.source, 200, 10000, 22) // every file changes

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "deploy", "-addr", "http://"+pc.ctlAPI, "-token-file", pc.token,
		"-config", "/nonexistent", "-m", "second", "-maintenance", "-allow-missing")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	killed := false
	for sc.Scan() {
		fmt.Fprintln(&out, sc.Text())
		if !killed && strings.HasPrefix(sc.Text(), "deploy ") { // the deploy is running
			pc.kill("web-2")
			killed = true
			t.Logf("web-2 killed %.2fs after the deploy started", time.Since(begin).Seconds())
		}
	}
	err = cmd.Wait()
	t.Logf("deploy output after %.1fs:\n%s%s", time.Since(begin).Seconds(), out.String(), stderr.String())
	if ctx.Err() != nil {
		t.Fatal("the deploy did not finish within 60s")
	}
	if !killed {
		t.Fatal("the deploy printed no id")
	}
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	for _, name := range []string{"maintenance on", "publish", "wait for web nodes", "maintenance off"} {
		if !deployStep(name, "ok").MatchString(out.String()) {
			t.Errorf("no timed ok step %q in the output", name)
		}
	}
	if !strings.Contains(out.String(), "1 web nodes serve revision 2; not waited for: web-2 (dead)") {
		t.Error("the wait step does not name web-2 as not waited for")
	}
	if d := mirrortest.DiffTrees(pc.source, pc.target("web-1")); d != nil {
		t.Errorf("web-1 after the deploy: %s", strings.Join(d, "; "))
	}
	if d := mirrortest.DiffTrees(pc.source, pc.target("web-2")); d == nil {
		t.Error("web-2 serves revision 2: it was killed too late to test anything")
	}
	if m := maintenanceStatus(t, pc); !strings.Contains(m, "maintenance: off") {
		t.Errorf("maintenance after the deploy:\n%s", m)
	}
}

// TestDeployProcessFailingRun: a failing -run command fails the deploy with
// exit status 1, the output names the failed step, maintenance stays on.
func TestDeployProcessFailingRun(t *testing.T) {
	t.Parallel()
	pc := newDeployCluster(t)
	out, err := pc.cli("deploy", "-m", "broken upgrade", "-maintenance", "-run", "echo upgrade exploded; exit 3")
	t.Logf("deploy output:\n%s", out)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("deploy exit: %v, want status 1", err)
	}
	for _, name := range []string{"maintenance on", "publish", "wait for web nodes"} {
		if !deployStep(name, "ok").MatchString(out) {
			t.Errorf("no timed ok step %q in the output", name)
		}
	}
	if !deployStep("run", "FAILED").MatchString(out) {
		t.Error("the run step is not shown FAILED")
	}
	if strings.Contains(out, "maintenance off") {
		t.Error("maintenance off ran after the failed step")
	}
	for _, want := range []string{"upgrade exploded", "exit status 3", "maintenance stays on"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if !regexp.MustCompile(`(?m)^deploy \S+ failed in \d+\.\d\ds$`).MatchString(out) {
		t.Error("no final failed line with the time")
	}
	m := maintenanceStatus(t, pc)
	if !strings.Contains(m, "maintenance: ON") || !strings.Contains(m, "broken upgrade") {
		t.Errorf("maintenance after the failed deploy:\n%s", m)
	}
}

package moodle_test

import (
	"context"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/moodle"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

func currentUser(t *testing.T) *moodle.User {
	t.Helper()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	u, err := moodle.LookupUser(me.Username)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestRunTimeoutKillsTheCommandsChildren: when a command's time is up (a
// hung upgrade, deploy's hour), Run returns at once and nothing of the
// command keeps running: not the shell, nor what the shell started. Before,
// only the shell was killed; its child kept the output pipe open, Run
// waited for it, and the agent's Close with it.
func TestRunTimeoutKillsTheCommandsChildren(t *testing.T) {
	u := currentUser(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := u.Run(ctx, t.TempDir(), "/bin/sh", "-c", "sleep 120 & echo $! > "+pidFile+"; wait; echo finished")
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a command killed at its timeout reported success")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return 60s after the command's timeout: it waits for the command's children")
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			return errors.New("the command's child (sleep 120) still runs")
		}
		return nil
	})
}

// TestRunCleanEnvironment: the command sees only its own environment and
// runs in dir.
func TestRunCleanEnvironment(t *testing.T) {
	t.Setenv("NODEAGENT_TEST_SECRET", "must-not-leak")
	u := currentUser(t)
	dir := t.TempDir()
	out, err := u.Run(context.Background(), dir, "/bin/sh", "-c", "pwd; env")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, dir+"\n") || strings.Contains(out, "NODEAGENT_TEST_SECRET") || !strings.Contains(out, "HOME="+u.Home) {
		t.Fatalf("output:\n%s", out)
	}
}

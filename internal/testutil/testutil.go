// Package testutil holds the helpers the tests of several packages share:
// polling with a deadline (never a bare sleep) and free loopback addresses.
// Only tests import it.
package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Eventually polls f every 20ms until it returns nil, and fails the test
// with f's last error once timeout has passed.
func Eventually(tb testing.TB, timeout time.Duration, f func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FreeAddr returns a 127.0.0.1 address whose port was free for both TCP
// and UDP a moment ago (an agent's gossip port takes both).
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	pc.Close()
	return addr
}

// LogBuffer collects log output from concurrent writers (a slog handler's
// sink) for a test to read.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// BuildAgent builds the nodeagent command into a new temporary directory
// and returns the binary's path and a function removing it: for tests that
// run agents as processes (call it from TestMain).
func BuildAgent() (string, func(), error) {
	dir, err := os.MkdirTemp("", "nodeagent-bin-")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, "nodeagent")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/nodeagent/nodeagent/cmd/nodeagent").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("build nodeagent: %w\n%s", err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// MainWithAgent is a TestMain for packages that run agents as processes:
// it builds nodeagent (BuildAgent), sets *bin to the binary, runs the
// tests, removes the binary and exits with the tests' status.
func MainWithAgent(m *testing.M, bin *string) {
	path, cleanup, err := BuildAgent()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*bin = path
	code := m.Run()
	cleanup()
	os.Exit(code)
}

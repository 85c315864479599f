// Package dbtest starts real database servers for tests: PostgreSQL 15 and
// MariaDB from Debian's packages, each in its own temporary directory on a
// free port of 127.0.0.1, tuned for speed (no fsync). When the server
// binaries are missing a test is skipped with a message naming the packages,
// unless CI=true, where it fails. It touches nothing outside its directories.
package dbtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Server is a running database server.
type Server struct {
	Driver string // postgres | mysql
	Host   string // 127.0.0.1
	Port   int
	dir    string
	socket string // postgres: socket directory; mysql: socket file
	stop   func() error
	client func(db string) *exec.Cmd // a superuser SQL client reading stdin
}

// missing skips or fails a test whose server binaries are absent.
func missing(tb testing.TB, what, pkgs string) {
	tb.Helper()
	msg := fmt.Sprintf("%s not found; install it with: apt-get install -y %s", what, pkgs)
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// run runs cmd, failing the test with its output on error.
func run(tb testing.TB, cmd *exec.Cmd) string {
	tb.Helper()
	var out bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &out
	}
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out.String())
	}
	return out.String()
}

// SQL runs statements as the superuser in database db ("" for the server's
// default) and returns the output, one row a line, columns separated by tabs.
func (s *Server) SQL(tb testing.TB, db, sql string) string {
	tb.Helper()
	cmd := s.client(db)
	cmd.Stdin = strings.NewReader(sql)
	var out bytes.Buffer
	cmd.Stdout = &out
	run(tb, cmd)
	return strings.TrimSpace(out.String())
}

// Stop stops the server now (tests of a server that is down). It is safe to
// call more than once.
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	if s.stop == nil {
		return
	}
	stop := s.stop
	s.stop = nil
	if err := stop(); err != nil {
		tb.Errorf("stop %s: %v", s.Driver, err)
	}
}

// waitFor polls ok until it is true or the deadline passes.
func waitFor(tb testing.TB, what string, limit time.Duration, ok func() bool) {
	tb.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not ready after %s", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tempDir makes a directory under the system temp dir; cleanup removes it.
func tempDir(tb testing.TB, prefix string) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// findBin looks for name in dirs, then in PATH.
func findBin(name string, dirs ...string) string {
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return ""
	}
	return p
}

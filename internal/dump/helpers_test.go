package dump_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/dump"
	"github.com/nodeagent/nodeagent/internal/dump/dbtest"
)

var engines = []struct {
	name  string
	start func(testing.TB) *dbtest.Server
}{
	{"postgres", dbtest.Postgres},
	{"mariadb", dbtest.MariaDB},
}

// env is a database server with a Moodle-like database "moodle" owned by
// user "moodle", whose password is in a file.
type env struct {
	srv      *dbtest.Server
	password string
	db       config.DBConfig
	logs     *syncBuffer
}

func newEnv(t *testing.T, start func(testing.TB) *dbtest.Server) *env {
	t.Helper()
	e := &env{srv: start(t), password: "pw-" + randHex(8) + "-'\"\\:#x", logs: &syncBuffer{}}
	e.srv.CreateUser(t, "moodle", sqlEscape(e.srv.Driver, e.password))
	e.srv.CreateDB(t, "moodle", "moodle")
	e.srv.LoadMoodle(t, "moodle", "moodle", 500)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "db.password")
	writeFile(t, pwFile, e.password+"\n")
	e.db = e.dbConfig(pwFile, filepath.Join(dir, "dumps"))
	return e
}

// dbConfig is the db section for database moodle of e's server.
func (e *env) dbConfig(pwFile, dumpDir string) config.DBConfig {
	return config.DBConfig{
		Driver: e.srv.Driver, Host: e.srv.Host, Port: e.srv.Port, Name: "moodle", User: "moodle",
		PasswordFile: pwFile, DumpDir: dumpDir, Schedule: "22 2 * * *", Keep: 7,
	}
}

// sqlEscape quotes s for a '...' literal: quotes doubled, and for MariaDB
// backslashes too (it treats them as escapes; PostgreSQL does not).
func sqlEscape(driver, s string) string {
	s = strings.ReplaceAll(s, "'", "''")
	if driver == "mysql" {
		s = strings.ReplaceAll(s, `\`, `\\`)
	}
	return s
}

// dumper opens a Dumper for e (no schedule unless the config asks for a
// clock) and closes it at cleanup.
func (e *env) dumper(t *testing.T, modify ...func(*dump.Config)) *dump.Dumper {
	t.Helper()
	cfg := dump.Config{DB: e.db, NoSchedule: true, Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, m := range modify {
		m(&cfg)
	}
	d := dump.New(cfg)
	if err := d.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func mustDump(t *testing.T, d *dump.Dumper) dump.Record {
	t.Helper()
	rec, err := d.Dump(context.Background(), dump.TriggerRequest)
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	return rec
}

func mustList(t *testing.T, d *dump.Dumper) dump.Listing {
	t.Helper()
	l, err := d.List()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// dirFiles lists the names in dir, sorted.
func dirFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeClock is a Clock the test moves with Set.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := waiter{at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		w.ch <- c.now
		return w.ch
	}
	c.waiters = append(c.waiters, w)
	return w.ch
}

// Set moves the clock to t and fires the timers due by then.
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(t) {
			kept = append(kept, w)
			continue
		}
		w.ch <- t
	}
	c.waiters = kept
}

// waiting returns the deadlines of the pending timers.
func (c *fakeClock) waiting() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var at []time.Time
	for _, w := range c.waiters {
		at = append(at, w.at)
	}
	return at
}

// eventually polls ok until it is true or a generous deadline passes.
func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

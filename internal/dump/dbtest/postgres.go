package dbtest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pgBinDirs are where Debian puts the PostgreSQL server binaries.
var pgBinDirs = []string{"/usr/lib/postgresql/15/bin"}

// Postgres starts a PostgreSQL server for the test and stops it at cleanup.
// Local (socket) connections trust the superuser "postgres"; TCP connections
// need a password (scram-sha-256), as a real server would.
func Postgres(tb testing.TB) *Server {
	tb.Helper()
	initdb, pgctl, psql := findBin("initdb", pgBinDirs...), findBin("pg_ctl", pgBinDirs...), findBin("psql", pgBinDirs...)
	if initdb == "" || pgctl == "" || psql == "" {
		missing(tb, "PostgreSQL 15 (initdb, pg_ctl, psql)", "postgresql-15")
	}
	dir := tempDir(tb, "dbtest-pg-")
	cred := pgCredential(tb, dir)
	s := &Server{Driver: "postgres", Host: "127.0.0.1", Port: freePort(tb), dir: dir, socket: dir}
	data := filepath.Join(dir, "data")
	as := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
		return cmd
	}
	run(tb, as(initdb, "-D", data, "-U", "postgres", "-E", "UTF8", "--no-sync",
		"--auth-local=trust", "--auth-host=scram-sha-256"))
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=32MB", s.Port, dir)
	run(tb, as(pgctl, "-D", data, "-o", opts, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "120", "start"))
	s.stop = func() error {
		out, err := as(pgctl, "-D", data, "-m", "immediate", "-w", "stop").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	tb.Cleanup(func() { s.Stop(tb) })
	s.client = func(db string) *exec.Cmd {
		if db == "" {
			db = "postgres"
		}
		return exec.Command(psql, "-X", "-q", "-tA", "-F", "\t", "-v", "ON_ERROR_STOP=1",
			"-h", dir, "-p", strconv.Itoa(s.Port), "-U", "postgres", "-d", db, "-f", "-")
	}
	waitFor(tb, "postgres", 2*time.Minute, func() bool {
		return s.client("").Run() == nil
	})
	return s
}

// pgCredential returns who runs the server: as root the "postgres" user
// (PostgreSQL refuses to run as root), which is given dir; otherwise nil,
// the current user.
func pgCredential(tb testing.TB, dir string) *syscall.Credential {
	tb.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		missing(tb, "the postgres system user", "postgresql-15")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		tb.Fatal(err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// CreateUser creates a login role with a password that may create
// databases (a restore target creates its database).
func (s *Server) CreateUser(tb testing.TB, name, password string) {
	tb.Helper()
	if s.Driver == "postgres" {
		s.SQL(tb, "", fmt.Sprintf("CREATE ROLE %s LOGIN CREATEDB PASSWORD '%s';", name, password))
		return
	}
	s.SQL(tb, "", fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'; GRANT ALL ON *.* TO '%s'@'%%';", name, password, name))
}

// CreateDB creates database name owned by (or granted to) owner.
func (s *Server) CreateDB(tb testing.TB, name, owner string) {
	tb.Helper()
	if s.Driver == "postgres" {
		s.SQL(tb, "", fmt.Sprintf("CREATE DATABASE %s OWNER %s;", name, owner))
		return
	}
	s.SQL(tb, "", fmt.Sprintf("CREATE DATABASE %s CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;", name))
}

// LockTable holds an ACCESS EXCLUSIVE lock on table in db (PostgreSQL)
// until release is called: a pg_dump started meanwhile waits for it, which
// keeps a dump running for as long as a test needs.
func (s *Server) LockTable(tb testing.TB, db, table string) (release func()) {
	tb.Helper()
	cmd := s.client(db)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	fmt.Fprintf(stdin, "BEGIN; LOCK TABLE %s IN ACCESS EXCLUSIVE MODE; SELECT 'locked';\n", table)
	buf := make([]byte, 64)
	if n, err := out.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "locked") {
		tb.Fatalf("lock %s: %v %q", table, err, buf[:n])
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			stdin.Close()
			cmd.Wait()
		})
	}
	tb.Cleanup(release)
	return release
}

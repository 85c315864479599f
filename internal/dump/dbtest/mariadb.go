package dbtest

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// MariaDB starts a MariaDB server for the test and stops it at cleanup.
// root connects over the socket without a password; TCP users need one.
func MariaDB(tb testing.TB) *Server {
	tb.Helper()
	install, server, client := findBin("mariadb-install-db"), findBin("mariadbd", "/usr/sbin"), findBin("mariadb")
	if install == "" || server == "" || client == "" {
		missing(tb, "MariaDB (mariadb-install-db, mariadbd, mariadb)", "mariadb-server mariadb-client")
	}
	dir := tempDir(tb, "dbtest-mariadb-")
	data := filepath.Join(dir, "data")
	s := &Server{Driver: "mysql", Host: "127.0.0.1", Port: freePort(tb), dir: dir, socket: filepath.Join(dir, "sock")}
	run(tb, exec.Command(install, "--no-defaults", "--datadir="+data, "--user=root",
		"--auth-root-authentication-method=normal", "--skip-test-db"))
	cmd := exec.Command(server, "--no-defaults", "--datadir="+data, "--socket="+s.socket,
		"--port="+strconv.Itoa(s.Port), "--bind-address=127.0.0.1", "--user=root",
		"--pid-file="+filepath.Join(dir, "pid"), "--log-error="+filepath.Join(dir, "error.log"),
		"--skip-log-bin", "--skip-name-resolve", "--innodb-flush-log-at-trx-commit=0",
		"--innodb-doublewrite=0", "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=48M",
		"--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.stop = func() error {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			<-exited
		}
		return nil
	}
	tb.Cleanup(func() { s.Stop(tb) })
	s.client = func(db string) *exec.Cmd {
		args := []string{"--no-defaults", "-S", s.socket, "-uroot", "-N", "-B"}
		if db != "" {
			args = append(args, db)
		}
		return exec.Command(client, args...)
	}
	waitFor(tb, "mariadb", 2*time.Minute, func() bool {
		select {
		case <-exited:
			tb.Fatalf("mariadbd exited: %s (see %s)", cmd.ProcessState, filepath.Join(dir, "error.log"))
		default:
		}
		return s.client("").Run() == nil
	})
	return s
}

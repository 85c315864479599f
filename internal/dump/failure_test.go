package dump_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nodeagent/nodeagent/internal/dump"
)

// TestFailedDumpKeepsEarlierDumps: a wrong password, the dump tool killed
// mid-dump, a full disk and a server that is down each fail the dump
// loudly (error, listing, counter, log) and leave the earlier good dump
// untouched, with no partial file under a final name.
func TestFailedDumpKeepsEarlierDumps(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) {
			e := newEnv(t, eng.start)
			e.srv.Fill(t, "moodle", "moodle", 40) // long enough to be killed mid-dump
			d := e.dumper(t)
			good := mustDump(t, d)
			failures := uint64(0)
			expectFailure := func(t *testing.T, d *dump.Dumper, dir string, err error, want string) {
				t.Helper()
				failures++
				if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(want)) {
					t.Fatalf("dump error %v, want one saying %q", err, want)
				}
				if strings.Contains(err.Error(), e.password) {
					t.Fatalf("the error shows the password: %v", err)
				}
				l := mustList(t, d)
				if len(l.Dumps) != 1 || l.Dumps[0] != good {
					t.Fatalf("dumps after the failure: %+v, want only the earlier %s", l.Dumps, good.Name)
				}
				f := l.LastFailure
				if f == nil || f.Status != dump.StatusFailed || f.Error != err.Error() || l.Running != nil {
					t.Fatalf("listing: last failure %+v running %+v, want the failure %q", f, l.Running, err)
				}
				if s := d.Stats(); s.Failures != failures || s.Running {
					t.Fatalf("stats %+v, want %d failures", s, failures)
				}
				if got, want := dirFiles(t, dir), []string{good.Name, good.Name + ".json"}; strings.Join(got, " ") != strings.Join(want, " ") {
					t.Fatalf("dump_dir holds %v, want only %v", got, want)
				}
				file, rec, err := d.OpenDump(good.Name)
				if err != nil || rec.SHA256 != good.SHA256 {
					t.Fatalf("earlier dump: %v %+v", err, rec)
				}
				file.Close()
				if sum := fileSHA(t, filepath.Join(dir, good.Name)); sum != good.SHA256 {
					t.Fatalf("earlier dump changed: sha256 %s, was %s", sum, good.SHA256)
				}
				if !strings.Contains(e.logs.String(), "dump FAILED") {
					t.Fatal("the failure is not in the log")
				}
			}

			t.Run("wrong password", func(t *testing.T) {
				writeFile(t, e.db.PasswordFile, "wrong-"+randHex(4))
				defer writeFile(t, e.db.PasswordFile, e.password)
				_, err := d.Dump(context.Background(), dump.TriggerRequest)
				want := map[string]string{"postgres": "password authentication failed", "mysql": "Access denied"}[e.db.Driver]
				expectFailure(t, d, e.db.DumpDir, err, want)
			})

			t.Run("tool killed", func(t *testing.T) {
				if _, err := d.Start(dump.TriggerRequest); err != nil {
					t.Fatal(err)
				}
				if _, err := d.Start(dump.TriggerRequest); !errors.Is(err, dump.ErrRunning) {
					t.Fatalf("a second dump while one runs: %v, want ErrRunning", err)
				}
				var pid int
				eventually(t, "the dump tool", func() bool { pid = toolPID(e.db.Port); return pid != 0 })
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				eventually(t, "the dump to end", func() bool { return mustList(t, d).Running == nil })
				f := mustList(t, d).LastFailure
				if f == nil {
					t.Fatal("no failure recorded")
				}
				expectFailure(t, d, e.db.DumpDir, errors.New(f.Error), "signal: killed")
			})

			t.Run("disk full", func(t *testing.T) {
				dir := tmpfs(t, good.Size+good.Size/2)
				for _, name := range []string{good.Name, good.Name + ".json"} {
					copyFile(t, filepath.Join(e.db.DumpDir, name), filepath.Join(dir, name))
				}
				full := e.db
				full.DumpDir = dir
				fd := (&env{srv: e.srv, password: e.password, db: full, logs: e.logs}).dumper(t)
				_, err := fd.Dump(context.Background(), dump.TriggerRequest)
				saved := failures
				failures = 0
				expectFailure(t, fd, dir, err, "No space left on device")
				failures = saved
			})

			t.Run("server down", func(t *testing.T) {
				e.srv.Stop(t)
				_, err := d.Dump(context.Background(), dump.TriggerRequest)
				want := map[string]string{"postgres": "connection", "mysql": "Can't connect"}[e.db.Driver]
				expectFailure(t, d, e.db.DumpDir, err, want)
			})
		})
	}
}

// toolPID returns the pid of a running pg_dump or mysqldump talking to the
// server on port, or 0.
func toolPID(port int) int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		raw, err := os.ReadFile(p)
		if err != nil || len(raw) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		switch filepath.Base(args[0]) {
		case "pg_dump", "mysqldump", "mariadb-dump":
		default:
			continue
		}
		for _, a := range args {
			if a == strconv.Itoa(port) || a == "--port="+strconv.Itoa(port) {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
				return pid
			}
		}
	}
	return 0
}

// tmpfs mounts a tmpfs of size bytes for the test (root only).
func tmpfs(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the disk-full test mounts a tmpfs and needs root")
		}
		t.Skip("the disk-full test mounts a tmpfs and needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, string(data))
}

package dump_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/internal/dump"
)

// TestPasswordNotInProcessesOrLogs scans every process's arguments and the
// tools' environment while a dump and a restore run: the password is never
// there, nor in the log, and its credential files are gone afterwards.
func TestPasswordNotInProcessesOrLogs(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) {
			e := newEnv(t, eng.start)
			e.srv.Fill(t, "moodle", "moodle", 30)
			d := e.dumper(t)
			done := make(chan error, 1)
			go func() {
				rec, err := d.Dump(context.Background(), dump.TriggerRequest)
				if err == nil {
					err = d.Restore(context.Background(), rec.Name, dump.Target{Host: e.db.Host, Port: e.db.Port, Name: "moodle_copy"})
				}
				done <- err
			}()
			seen := map[string]bool{} // tool invocations seen, by pid
			credFiles := map[string]bool{}
			for scanning := true; scanning; {
				select {
				case err := <-done:
					if err != nil {
						t.Fatal(err)
					}
					scanning = false
				default:
				}
				procs, _ := filepath.Glob("/proc/[0-9]*")
				for _, p := range procs {
					raw, err := os.ReadFile(filepath.Join(p, "cmdline"))
					if err != nil {
						continue
					}
					cmdline := strings.ReplaceAll(string(raw), "\x00", " ")
					if strings.Contains(cmdline, e.password) {
						t.Fatalf("the password is in the arguments of %s: %s", p, cmdline)
					}
					if !strings.Contains(cmdline, strconv.Itoa(e.db.Port)) || strings.Contains(cmdline, "mariadbd") || strings.Contains(cmdline, "postgres -D") {
						continue
					}
					seen[p+" "+strings.Fields(cmdline)[0]] = true
					environ, _ := os.ReadFile(filepath.Join(p, "environ"))
					if strings.Contains(string(environ), e.password) {
						t.Fatalf("the password is in the environment of %s", cmdline)
					}
					for _, kv := range strings.Split(string(environ), "\x00") {
						if f, ok := strings.CutPrefix(kv, "PGPASSFILE="); ok {
							credFiles[f] = true
						}
					}
					for _, a := range strings.Fields(cmdline) {
						if f, ok := strings.CutPrefix(a, "--defaults-extra-file="); ok {
							credFiles[f] = true
						}
					}
				}
			}
			if len(seen) < 2 || len(credFiles) == 0 {
				t.Fatalf("the scan saw %d tool processes and %d credential files; it proves nothing", len(seen), len(credFiles))
			}
			t.Logf("scanned %d tool processes: %v", len(seen), seen)
			for f := range credFiles {
				if _, err := os.Stat(f); !os.IsNotExist(err) {
					t.Errorf("credential file %s still exists after the run (%v)", f, err)
				}
			}
			if strings.Contains(e.logs.String(), e.password) {
				t.Fatal("the password is in the log")
			}
		})
	}
}

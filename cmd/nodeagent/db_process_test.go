package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/dump"
	"github.com/nodeagent/nodeagent/internal/dump/dbtest"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// TestProcessDBCommands drives `nodeagent db` against a controller process
// configured with a db section and a real PostgreSQL: dump -wait, dumps
// (table and -json), restore into a new database with the same content;
// the password is in neither the agent's log nor the CLI's output.
func TestProcessDBCommands(t *testing.T) {
	srv := dbtest.Postgres(t)
	password := "proc-test-" + fmt.Sprint(time.Now().UnixNano())
	srv.CreateUser(t, "moodle", password)
	srv.CreateDB(t, "moodle", "moodle")
	srv.LoadMoodle(t, "moodle", "moodle", 200)

	pc := newProcCluster(t)
	writeFile(t, filepath.Join(pc.source, "index.php"), "<?php", 0o644)
	pwFile := filepath.Join(pc.dir, "db.password")
	writeFile(t, pwFile, password+"\n", 0o600)
	cfg := pc.writeConfig("controller", "controller")
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "db:\n  driver: postgres\n  host: %s\n  port: %d\n  name: moodle\n  user: moodle\n  password_file: %s\n  dump_dir: %s\n  keep: 2\n",
		srv.Host, srv.Port, pwFile, filepath.Join(pc.dir, "dumps"))
	f.Close()
	pc.start("controller")
	db := func(args ...string) (string, error) {
		full := append([]string{"db"}, args[0])
		full = append(full, "-addr", "http://"+pc.ctlAPI, "-token-file", pc.token, "-config", "/nonexistent")
		out, err := exec.Command(binary, append(full, args[1:]...)...).CombinedOutput()
		return string(out), err
	}
	var out string
	testutil.Eventually(t, 30*time.Second, func() error {
		out, err = db("dump", "-wait")
		return err
	})
	if !strings.Contains(out, "sha256") {
		t.Fatalf("db dump -wait: %s", out)
	}
	out, err = db("dumps", "-json")
	var l dump.Listing
	if err != nil || json.Unmarshal([]byte(out), &l) != nil || len(l.Dumps) != 1 {
		t.Fatalf("db dumps -json: %v %s", err, out)
	}
	name := l.Dumps[0].Name
	if out, err := db("dumps"); err != nil || !strings.Contains(out, name) || !strings.Contains(out, "keep 2") {
		t.Fatalf("db dumps: %v %s", err, out)
	}
	out, err = db("restore", name, "-host", srv.Host, "-port", fmt.Sprint(srv.Port), "-name", "moodle_copy")
	if err != nil || !strings.Contains(out, "succeeded") {
		t.Fatalf("db restore: %v\n%s", err, out)
	}
	if got, want := srv.Fingerprint(t, "moodle_copy"), srv.Fingerprint(t, "moodle"); got != want {
		t.Fatalf("restored copy differs:\n%s\nwant\n%s", got, want)
	}
	out, err = db("restore", name, "-host", srv.Host, "-port", fmt.Sprint(srv.Port), "-name", "moodle_copy")
	if code := exitCode(err); code != 1 || !strings.Contains(out, "new or empty database") {
		t.Fatalf("restore into a filled database: exit %d\n%s", code, out)
	}
	if _, err := db("restore", "-port", "5"); exitCode(err) != 2 {
		t.Fatalf("restore without NAME and -host: exit %d, want 2", exitCode(err))
	}
	if _, err := db("nope"); exitCode(err) != 2 {
		t.Fatalf("db nope: exit %d, want 2", exitCode(err))
	}
	log, _ := os.ReadFile(filepath.Join(pc.dir, "controller.log"))
	if !strings.Contains(string(log), "dump done") || strings.Contains(string(log), password) {
		t.Fatalf("agent log: has 'dump done': %v, has the password: %v", strings.Contains(string(log), "dump done"), strings.Contains(string(log), password))
	}
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

package agent_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/agent"
	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/dump"
	"github.com/nodeagent/nodeagent/internal/dump/dbtest"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// moodleConfigPHP is a Moodle config.php as the installer writes it.
const moodleConfigPHP = `<?php  // Moodle configuration file

unset($CFG);
global $CFG;
$CFG = new stdClass();

$CFG->dbtype    = 'pgsql';
$CFG->dblibrary = 'native';
$CFG->dbhost    = '10.0.0.5';
$CFG->dbname    = 'moodle';
$CFG->dbuser    = 'moodle';
$CFG->dbpass    = 'old-password';
$CFG->prefix    = 'mdl_';
$CFG->dboptions = array (
  'dbpersist' => 0,
  'dbport' => 5432,
  'dbsocket' => '',
);

$CFG->wwwroot   = 'https://moodle.example.com';
$CFG->dataroot  = '/moodle/moodledata';
$CFG->admin     = 'admin';

require_once(__DIR__ . '/lib/setup.php');
`

// newDBCluster is a controller with a db section for the database moodle
// on srv, whose source tree holds moodleConfigPHP (mode 0640).
func newDBCluster(t *testing.T, srv *dbtest.Server) (*cluster, string) {
	t.Helper()
	dir := t.TempDir()
	c := &cluster{t: t, dir: dir, source: filepath.Join(dir, "source"), webs: map[string]*agent.Agent{}, key: newKey(t)}
	writeTree(t, c.source, map[string]string{"index.php": "<?php echo 1;", "config.php": moodleConfigPHP})
	if err := os.Chmod(filepath.Join(c.source, "config.php"), 0o640); err != nil {
		t.Fatal(err)
	}
	password := "pw-'\\-" + fmt.Sprint(time.Now().UnixNano())
	srv.CreateUser(t, "moodle", sqlQuote(srv.Driver, password))
	srv.CreateDB(t, "moodle", "moodle")
	srv.LoadMoodle(t, "moodle", "moodle", 300)
	pwFile := filepath.Join(dir, "db.password")
	writeTree(t, dir, map[string]string{"db.password": password + "\n"})
	cfg := c.config("controller", "controller")
	cfg.Mirror.Source = c.source
	cfg.DB = &config.DBConfig{
		Driver: srv.Driver, Host: srv.Host, Port: srv.Port, Name: "moodle", User: "moodle",
		PasswordFile: pwFile, DumpDir: filepath.Join(dir, "dumps"), Schedule: "22 2 * * *", Keep: 3,
	}
	c.ctl = c.open(cfg, c.key)
	return c, password
}

func sqlQuote(driver, s string) string {
	s = strings.ReplaceAll(s, "'", "''")
	if driver == "mysql" {
		s = strings.ReplaceAll(s, `\`, `\\`)
	}
	return s
}

// waitRestore polls a restore until it ends.
func waitRestore(t *testing.T, a *agent.Agent, id string) api.Restore {
	t.Helper()
	var r api.Restore
	testutil.Eventually(t, 3*time.Minute, func() error {
		getJSON(t, a, "/v1/db/restores/"+id, &r)
		if r.Status == api.DeployRunning {
			return fmt.Errorf("still running: %+v", r.Steps)
		}
		return nil
	})
	return r
}

// TestDatabaseSwitch moves the database to another server with the whole
// procedure: the new server holds the same data, every web node serves
// config.php with the new host, port and password (every other byte kept),
// and maintenance is off again. A second move into the now filled server
// stops at the restore with maintenance on and config.php untouched.
func TestDatabaseSwitch(t *testing.T) {
	for _, eng := range []struct {
		name  string
		start func(testing.TB) *dbtest.Server
	}{{"postgres", dbtest.Postgres}, {"mariadb", dbtest.MariaDB}} {
		t.Run(eng.name, func(t *testing.T) {
			oldSrv, newSrv := eng.start(t), eng.start(t)
			c, _ := newDBCluster(t, oldSrv)
			newPassword := `new'pw\x`
			newSrv.CreateUser(t, "moodle", sqlQuote(newSrv.Driver, newPassword))
			newPwFile := filepath.Join(c.dir, "new.password")
			writeTree(t, c.dir, map[string]string{"new.password": newPassword})
			w1, w2 := c.addWeb("web-1"), c.addWeb("web-2")
			c.publish("first")
			c.converged("web-1", "web-2")

			req := api.RestoreRequest{Target: dump.Target{Host: newSrv.Host, Port: newSrv.Port, PasswordFile: newPwFile}, Switch: true}
			code, _, body := call(t, "POST", "http://"+c.ctl.LocalAddr()+"/v1/db/restores", testToken, req)
			if code != http.StatusAccepted {
				t.Fatalf("switch: %d %s", code, body)
			}
			var r api.Restore
			json.Unmarshal(body, &r)
			r = waitRestore(t, c.ctl, r.ID)
			if r.Status != api.DeploySucceeded || len(r.Steps) != 7 {
				t.Fatalf("switch: %+v", r)
			}
			for _, s := range r.Steps {
				t.Logf("%-20s %-6s %6.2fs %s", s.Name, s.Status, s.Seconds, s.Detail)
			}
			if got, want := newSrv.Fingerprint(t, "moodle"), oldSrv.Fingerprint(t, "moodle"); got != want {
				t.Fatalf("the new server's database differs:\n got %s\nwant %s", got, want)
			}
			want := strings.NewReplacer(
				"'10.0.0.5'", "'127.0.0.1'",
				"'dbport' => 5432,", fmt.Sprintf("'dbport' => %d,", newSrv.Port),
				"'old-password'", `'new\'pw\\x'`,
			).Replace(moodleConfigPHP)
			for _, n := range []string{"web-1", "web-2"} {
				got, err := os.ReadFile(filepath.Join(c.target(n), "config.php"))
				if err != nil || string(got) != want {
					t.Fatalf("%s serves config.php:\n%s\nwant:\n%s (%v)", n, got, want, err)
				}
			}
			if fi, err := os.Stat(filepath.Join(c.source, "config.php")); err != nil || fi.Mode().Perm() != 0o640 {
				t.Fatalf("config.php mode after the rewrite: %v %v, want 0640", fi.Mode(), err)
			}
			maintenanceEverywhere(t, false, c.ctl, w1, w2)
			// `revisions` shows the switch.
			var list api.RevisionList
			getJSON(t, c.ctl, "/v1/revisions", &list)
			last := list.Revisions[len(list.Revisions)-1]
			if !strings.Contains(last.Message, "database switch (restore "+r.ID+")") || strings.Join(last.PinnedChanged, ",") != "config.php" {
				t.Fatalf("the switch's revision: %+v", last)
			}

			// Again into the same, now filled, database: refused at the restore.
			code, _, body = call(t, "POST", "http://"+c.ctl.LocalAddr()+"/v1/db/restores", testToken, req)
			if code != http.StatusAccepted {
				t.Fatalf("second switch: %d %s", code, body)
			}
			json.Unmarshal(body, &r)
			r = waitRestore(t, c.ctl, r.ID)
			if r.Status != api.DeployFailed || r.Steps[2].Status != api.DeployFailed || r.Steps[3].Status != api.DeployPending ||
				!strings.Contains(r.Error, "new or empty database") || !strings.Contains(r.Error, "maintenance stays on") {
				t.Fatalf("second switch: %+v", r)
			}
			maintenanceEverywhere(t, true, c.ctl, w1, w2)
			if got, _ := os.ReadFile(filepath.Join(c.source, "config.php")); string(got) != want {
				t.Fatalf("a failed switch changed config.php:\n%s", got)
			}
		})
	}
}

// TestDumpAPI: dumps on demand and by wait, one at a time, listed, served
// with their length and digest, reported in /v1/status; names outside the
// dumps are 404; web nodes and a switch without config lines say why.
func TestDumpAPI(t *testing.T) {
	srv := dbtest.Postgres(t)
	c, _ := newDBCluster(t, srv)
	w1 := c.addWeb("web-1")
	base := "http://" + c.ctl.LocalAddr()

	code, _, body := call(t, "POST", base+"/v1/db/dumps?wait=true", testToken, nil)
	var rec dump.Record
	if json.Unmarshal(body, &rec); code != http.StatusCreated || rec.Status != dump.StatusOK || rec.SHA256 == "" {
		t.Fatalf("dump ?wait=true: %d %s", code, body)
	}
	code, hdr, data := call(t, "GET", base+"/v1/db/dumps/"+rec.Name, testToken, nil)
	sum := sha256.Sum256(data)
	if code != 200 || int64(len(data)) != rec.Size || hdr.Get("Content-Length") != fmt.Sprint(rec.Size) ||
		hdr.Get("Repr-Digest") != "sha-256=:"+base64.StdEncoding.EncodeToString(sum[:])+":" {
		t.Fatalf("GET dump: %d, %d bytes, headers %v; record %+v", code, len(data), hdr, rec)
	}
	for _, name := range []string{"nope.dump", "..%2Fdb.password", "moodle-20200101T000000Z.dump", rec.Name + ".json"} {
		if code, _, body := call(t, "GET", base+"/v1/db/dumps/"+name, testToken, nil); code != 404 {
			t.Errorf("GET dump %q: %d %s, want 404", name, code, body)
		}
	}

	// A dump held up by a table lock: a second one is refused, naming it.
	release := srv.LockTable(t, "moodle", "mdl_config")
	code, _, body = call(t, "POST", base+"/v1/db/dumps", testToken, nil)
	if json.Unmarshal(body, &rec); code != http.StatusAccepted || rec.Status != dump.StatusRunning {
		t.Fatalf("dump: %d %s", code, body)
	}
	if code, _, body := call(t, "POST", base+"/v1/db/dumps?wait=true", testToken, nil); code != http.StatusConflict ||
		!strings.Contains(string(body), "a dump is running: "+rec.Name) {
		t.Fatalf("second dump while one runs: %d %s, want 409 naming %s", code, body, rec.Name)
	}
	var l dump.Listing
	if getJSON(t, c.ctl, "/v1/db/dumps", &l); l.Running == nil || l.Running.Name != rec.Name {
		t.Fatalf("listing while %s runs: %+v", rec.Name, l)
	}
	release()
	testutil.Eventually(t, time.Minute, func() error {
		getJSON(t, c.ctl, "/v1/db/dumps", &l)
		if l.Running != nil {
			return fmt.Errorf("running %+v", l.Running)
		}
		return nil
	})
	if len(l.Dumps) < 2 || l.LastFailure != nil {
		t.Fatalf("listing: %+v", l)
	}
	st := status(t, c.ctl)
	if st.DB == nil || st.DB.Dumps != len(l.Dumps) || st.DB.LastSuccess == nil || st.DB.Failures != 0 {
		t.Fatalf("status db section: %+v", st.DB)
	}

	// A failure is loud in /v1/db/dumps and /v1/status.
	srv.Stop(t)
	code, _, body = call(t, "POST", base+"/v1/db/dumps?wait=true", testToken, nil)
	if code != http.StatusInternalServerError || !strings.Contains(string(body), "earlier dumps are kept") {
		t.Fatalf("dump with the server down: %d %s", code, body)
	}
	getJSON(t, c.ctl, "/v1/db/dumps", &l)
	if l.LastFailure == nil || l.Failures != 1 || len(l.Dumps) < 2 {
		t.Fatalf("listing after a failure: %+v", l)
	}
	if st := status(t, c.ctl); st.DB.Failures != 1 || st.DB.LastFailure == nil || st.DB.LastFailure.Error == "" {
		t.Fatalf("status after a failure: %+v", st.DB)
	}
	if s, ok := c.ctl.DumpStats(); !ok || s.Failures != 1 || s.LastSuccess.IsZero() {
		t.Fatalf("DumpStats: %+v %v", s, ok)
	}
	// Prometheus sees the same: a failure counted, the last success kept;
	// a web node, which takes no dumps, has no dump series.
	fams := scrape(t, c.ctl)
	if v, ok := series(fams, "nodeagent_db_dump_failures_total", nil); !ok || v != 1 {
		t.Fatalf("nodeagent_db_dump_failures_total = %v (%v), want 1", v, ok)
	}
	if v, ok := series(fams, "nodeagent_db_dump_last_success_timestamp_seconds", nil); !ok || int64(v) != l.LastSuccess.Unix() {
		t.Fatalf("nodeagent_db_dump_last_success_timestamp_seconds = %v (%v), want %d", v, ok, l.LastSuccess.Unix())
	}
	if _, ok := series(scrape(t, w1), "nodeagent_db_dump_failures_total", nil); ok {
		t.Fatal("a web node exports nodeagent_db_dump_failures_total")
	}

	// Web nodes have no database; a restore names what is wrong.
	if code, _, body := call(t, "GET", "http://"+w1.LocalAddr()+"/v1/db/dumps", testToken, nil); code != http.StatusConflict {
		t.Fatalf("dumps on a web node: %d %s", code, body)
	}
	for _, bad := range []api.RestoreRequest{
		{Dump: rec.Name},                                      // no host
		{Target: dump.Target{Host: "db2"}},                    // no dump
		{Dump: "nope.dump", Target: dump.Target{Host: "db2"}}, // unknown dump
		{Dump: rec.Name, Target: dump.Target{Host: "db2"}, Switch: true},
		{Target: dump.Target{Host: "db2", PasswordFile: "relative"}, Switch: true},
	} {
		if code, _, body := call(t, "POST", base+"/v1/db/restores", testToken, bad); code < 400 || code >= 500 {
			t.Errorf("restore %+v: %d %s, want a 4xx", bad, code, body)
		}
	}
	writeTree(t, c.source, map[string]string{"config.php": "<?php $CFG->dbname = 'moodle';"})
	code, _, body = call(t, "POST", base+"/v1/db/restores", testToken, api.RestoreRequest{Target: dump.Target{Host: "db2"}, Switch: true})
	if code != http.StatusConflict || !strings.Contains(string(body), "dbhost") {
		t.Fatalf("switch with a config.php lacking dbhost: %d %s", code, body)
	}
}

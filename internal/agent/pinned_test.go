package agent_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// serves waits until web node n serves config.php with want.
func (c *cluster) servesConfig(n, want string) {
	c.t.Helper()
	testutil.Eventually(c.t, 10*time.Second, func() error {
		b, err := os.ReadFile(filepath.Join(c.target(n), "config.php"))
		if err != nil || !strings.Contains(string(b), want) {
			return fmt.Errorf("%s serves config.php %q (%v), want %q in it", n, b, err, want)
		}
		return nil
	})
}

// TestRollbackAcrossConfigPHP: after a database switch (config.php points
// at another server), a rollback to a revision from before it is refused,
// naming config.php and the settings that would change (never the
// password); -force rolls back all the same. A rollback that keeps
// config.php works as before, and revisions show where config.php changed.
func TestRollbackAcrossConfigPHP(t *testing.T) {
	c := newCluster(t)
	oldConfig := strings.Replace(moodleConfigPHP, "'old-password'", "'old-secret'", 1)
	writeTree(t, c.source, map[string]string{"config.php": oldConfig})
	c.addWeb("web-1")
	c.publish("first")
	c.converged("web-1")
	newConfig := strings.NewReplacer("'10.0.0.5'", "'10.0.0.9'", "'old-secret'", "'new-secret'").Replace(oldConfig)
	writeTree(t, c.source, map[string]string{"config.php": newConfig})
	c.publish("database switch")
	writeTree(t, c.source, map[string]string{"index.php": "<?php echo 3;"})
	c.publish("third")
	c.converged("web-1")
	base := "http://" + c.ctl.LocalAddr()

	// Revision 3 -> 2: config.php is the same, the rollback goes through.
	if code, _, body := call(t, "POST", base+"/v1/rollback", testToken, api.RollbackRequest{Revision: "2"}); code != 200 {
		t.Fatalf("rollback 2: %d %s", code, body)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if b, _ := os.ReadFile(filepath.Join(c.target("web-1"), "index.php")); string(b) != "<?php echo 1;" {
			return fmt.Errorf("web-1 serves index.php %q", b)
		}
		return nil
	})

	// Revision 2 -> 1 moves config.php back to the old database: refused.
	code, _, body := call(t, "POST", base+"/v1/rollback", testToken, api.RollbackRequest{Revision: "1"})
	if code != http.StatusConflict {
		t.Fatalf("rollback across config.php: %d %s", code, body)
	}
	var p api.Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	containsAll(t, "refusal", p.Detail, "config.php", `$CFG->dbhost '10.0.0.9' → '10.0.0.5'`, "$CFG->dbpass differs", "-force")
	if strings.Contains(p.Detail, "secret") {
		t.Fatalf("the refusal shows a password: %s", body)
	}
	if st := status(t, c.ctl); st.Revision.Target == nil || st.Revision.Target.Seq != 2 {
		t.Fatalf("a refused rollback moved the target: %+v", st.Revision)
	}
	c.servesConfig("web-1", "'10.0.0.9'")

	// Forced: it switches, and says what it changed.
	code, _, body = call(t, "POST", base+"/v1/rollback", testToken, api.RollbackRequest{Revision: "1", Force: true})
	var res api.RollbackResponse
	if err := json.Unmarshal(body, &res); code != 200 || err != nil || res.Target.Seq != 1 ||
		len(res.PinnedChanges) != 1 || !strings.HasPrefix(res.PinnedChanges[0], "config.php: $CFG->dbhost") {
		t.Fatalf("rollback -force: %d %s", code, body)
	}
	c.servesConfig("web-1", "'10.0.0.5'")

	var list api.RevisionList
	getJSON(t, c.ctl, "/v1/revisions", &list)
	for _, r := range list.Revisions {
		want := ""
		if r.Seq == 2 {
			want = "config.php"
		}
		if got := strings.Join(r.PinnedChanged, ","); got != want {
			t.Errorf("revision %d: pinned_changed %q, want %q", r.Seq, got, want)
		}
	}
}

package agent_test

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/agent"
	"github.com/nodeagent/nodeagent/internal/durable"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// TestRestartBeforeJoinLogsNoError: a web node that restarts with a target
// it has not synced yet (it knew of revision 2, could not fetch it) waits
// for the controller while it joins, instead of logging ERROR "no live
// controller" before it has even joined; then it syncs.
func TestRestartBeforeJoinLogsNoError(t *testing.T) {
	c := newCluster(t)
	cut := new(atomic.Bool)
	web := c.addCuttableWeb("web-1", cut)
	c.publish("first")
	c.converged("web-1")
	cut.Store(true)
	writeTree(t, c.source, map[string]string{"index.php": "<?php echo 2;"})
	c.publish("second")
	testutil.Eventually(t, 10*time.Second, func() error {
		if st := status(t, web); st.Revision.Target == nil || st.Revision.Target.Seq != 2 {
			return fmt.Errorf("web-1 does not know revision 2 yet: %+v", st.Revision)
		}
		return nil
	})
	web.Close()

	logs := &logRecorder{}
	c.open(c.config("web-1", "web"), c.key, func(o *agent.Options) { o.Logger = slog.New(logs) })
	c.converged("web-1")
	for _, l := range logs.take() {
		if strings.HasPrefix(l, "ERROR") {
			t.Errorf("logged while joining: %s", l)
		}
	}
}

// TestStartRemovesConfigLeftovers: a controller killed while it rewrote
// config.php (a database move) left a whole copy of it, the new password
// in it, under a name that does not end in .php. At the next start it is
// removed before anything is published: it never reaches a web node's
// docroot, where a web server without nginx's dot-file rule would send it
// as text. Leftovers of climaintenance.html go from Moodle's dataroot too.
func TestStartRemovesConfigLeftovers(t *testing.T) {
	c := newCluster(t)
	c.ctl.Close()
	leftover := filepath.Join(c.source, durable.TempPrefix+"config.php-4242")
	writeTree(t, c.source, map[string]string{filepath.Base(leftover): "<?php $CFG->dbpass = 'new-secret';"})
	writeTree(t, filepath.Join(c.dir, "moodledata"), map[string]string{durable.TempPrefix + "climaintenance.html-77": "held"})
	dataroot := c.withDataroot(nil)
	c.addWeb("web-1")
	c.publish("after the crash")
	c.converged("web-1")
	if _, err := os.Stat(filepath.Join(c.target("web-1"), filepath.Base(leftover))); !os.IsNotExist(err) {
		t.Fatalf("the leftover copy of config.php reached web-1: %v", err)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Fatalf("the leftover is still in the source: %v", err)
	}
	ents, _ := os.ReadDir(dataroot)
	if len(ents) != 0 {
		t.Fatalf("dataroot: %v", ents)
	}
}

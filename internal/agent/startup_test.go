package agent_test

import (
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/agent"
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
	c.open(c.config("web-1", "web"), testKey, func(o *agent.Options) { o.Logger = slog.New(logs) })
	c.converged("web-1")
	for _, l := range logs.take() {
		if strings.HasPrefix(l, "ERROR") {
			t.Errorf("logged while joining: %s", l)
		}
	}
}

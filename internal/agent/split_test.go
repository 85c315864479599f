package agent_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/agent"
	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// splitAfter is 30 probe intervals of gossip.TestTiming.
var splitAfter = 30 * gossip.TestTiming().ProbeInterval

func withLogger(rec *testutil.LogRecorder) func(*agent.Options) {
	return func(o *agent.Options) { o.Logger = slog.New(rec) }
}

func controllerCheck(a *agent.Agent) (api.Check, bool) {
	cs := a.Health().Checks["gossip:controller"]
	if len(cs) != 1 {
		return api.Check{}, false
	}
	return cs[0], true
}

// TestSplitVisibleOnWebNode: a web node that sees no live controller for
// splitAfter warns (never fails) in readiness, status and metrics, and logs
// it once; when the controller is back, all of it clears, with one line.
func TestSplitVisibleOnWebNode(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	rec := &testutil.LogRecorder{}
	web := c.open(c.config("web-1", "web"), c.key, withLogger(rec))
	c.publish("first")
	c.converged("web-1")
	if chk, ok := controllerCheck(web); !ok || chk.Status != api.StatusPass {
		t.Fatalf("gossip:controller with a live controller = %+v (present %v), want pass", chk, ok)
	}

	ctlCfg := c.config("controller", "controller")
	ctlCfg.Mirror.Source = c.source
	if err := c.ctl.Close(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, splitAfter+20*time.Second, func() error {
		if chk, _ := controllerCheck(web); chk.Status != api.StatusWarn {
			return fmt.Errorf("gossip:controller %+v, want warn", chk)
		}
		return nil
	})
	h := web.Health()
	chk, _ := controllerCheck(web)
	if h.Status != api.StatusWarn || !strings.Contains(chk.Output, "no live controller seen for") || !strings.Contains(chk.Output, "controller last seen") {
		t.Errorf("readiness %s, gossip:controller %+v: want warn naming the controller", h.Status, chk)
	}
	if code := readyCode(t, web); code != 200 {
		t.Errorf("/readyz = %d while the controller is away, want 200 (warn keeps the node in the load balancer)", code)
	}
	st := web.Status().Gossip
	if st == nil || st.Controller == nil || !st.Controller.Missing || st.Controller.Alive ||
		st.Controller.Name != "controller" || st.Controller.UnseenSeconds < splitAfter.Seconds() {
		t.Errorf("status gossip = %+v, want the controller missing for at least %s", st, splitAfter)
	}
	if v, ok := series(scrape(t, web), "nodeagent_gossip_controller_unseen_seconds", nil); !ok || v < splitAfter.Seconds() {
		t.Errorf("nodeagent_gossip_controller_unseen_seconds = %v (present %v), want ≥ %v", v, ok, splitAfter.Seconds())
	}
	// The watch loop looks every second: two more looks, still one line.
	seenFor := st.Controller.UnseenSeconds
	testutil.Eventually(t, 10*time.Second, func() error {
		if s := web.Status().Gossip.Controller.UnseenSeconds; s < seenFor+2 {
			return fmt.Errorf("unseen for %.1fs", s)
		}
		return nil
	})
	if n := rec.Lines(slog.LevelWarn, "no live controller seen"); n != 1 {
		t.Errorf("%d warnings about the missing controller, want 1", n)
	}

	c.ctl = c.open(ctlCfg, c.key) // same data_dir: it rejoins the web node it remembers
	testutil.Eventually(t, 20*time.Second, func() error {
		if chk, _ := controllerCheck(web); chk.Status != api.StatusPass {
			return fmt.Errorf("gossip:controller %+v, want pass", chk)
		}
		return nil
	})
	if st := web.Status().Gossip.Controller; !st.Alive || st.Missing || st.UnseenSeconds != 0 {
		t.Errorf("status after the controller is back: %+v", st)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := rec.Lines(slog.LevelInfo, "live controller seen again"); n != 1 {
			return fmt.Errorf("%d lines about the controller being back, want 1", n)
		}
		return nil
	})
}

// TestMissingWebOnController: the controller reports the web nodes it saw
// in the last hour and no longer sees, by state, and logs the change once.
func TestMissingWebOnController(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := &cluster{t: t, dir: dir, source: dir + "/source", webs: map[string]*agent.Agent{}, key: newKey(t)}
	writeTree(t, c.source, map[string]string{"index.php": "<?php"})
	rec := &testutil.LogRecorder{}
	cfg := c.config("controller", "controller")
	cfg.Mirror.Source = c.source
	c.ctl = c.open(cfg, c.key, withLogger(rec))
	c.addWeb("web-1")
	web2 := c.addWeb("web-2")
	testutil.Eventually(t, 20*time.Second, func() error {
		if n := aliveWebs(c.ctl); n != 2 {
			return fmt.Errorf("controller sees %d live web nodes", n)
		}
		return nil
	})
	if st := c.ctl.Status().Gossip; st == nil || len(st.MissingWeb) != 0 || st.Controller != nil {
		t.Fatalf("controller status gossip = %+v, want no missing web node", st)
	}
	if err := web2.Close(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, splitAfter+20*time.Second, func() error {
		if st := c.ctl.Status().Gossip; len(st.MissingWeb) != 1 {
			return fmt.Errorf("missing web nodes %+v", st.MissingWeb)
		}
		return nil
	})
	m := c.ctl.Status().Gossip.MissingWeb[0]
	if m.Name != "web-2" || m.State != gossip.StateLeft || time.Since(m.Since) < splitAfter {
		t.Errorf("missing = %+v, want web-2 left at least %s ago", m, splitAfter)
	}
	fams := scrape(t, c.ctl)
	if v, ok := series(fams, "nodeagent_gossip_web_missing", map[string]string{"state": "left"}); !ok || v != 1 {
		t.Errorf(`nodeagent_gossip_web_missing{state="left"} = %v (present %v), want 1`, v, ok)
	}
	if v, ok := series(fams, "nodeagent_gossip_web_missing", map[string]string{"state": "dead"}); !ok || v != 0 {
		t.Errorf(`nodeagent_gossip_web_missing{state="dead"} = %v (present %v), want 0`, v, ok)
	}
	if _, ok := series(fams, "nodeagent_gossip_controller_unseen_seconds", nil); ok {
		t.Error("the controller exports nodeagent_gossip_controller_unseen_seconds")
	}
	if _, ok := controllerCheck(c.ctl); ok {
		t.Error("the controller has a gossip:controller readiness check")
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := rec.Lines(slog.LevelWarn, "web-2 (left since"); n != 1 {
			return fmt.Errorf("%d warnings naming web-2, want 1", n)
		}
		return nil
	})
}

func aliveWebs(a *agent.Agent) int {
	n := 0
	for _, m := range a.Members() {
		if m.Meta.Role == "web" && m.State == gossip.StateAlive {
			n++
		}
	}
	return n
}

// TestNoSyncErrorBeforeJoin: a web node that starts with a target it has
// not applied, before it found the controller, waits for the controller
// instead of logging a failed sync; it syncs once the controller is back.
func TestNoSyncErrorBeforeJoin(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	var cut atomic.Bool
	webCfg := c.config("web-1", "web")
	webCfg.Mirror.MaxLag = config.Duration(time.Second)
	webCfg.Gossip.Bind = testutil.FreeAddr(t) // restarts keep their addresses, as on VMs
	web := c.open(webCfg, c.key, func(o *agent.Options) {
		o.WrapPeerTransport = cutTransportWrapper(&cut)
	})
	c.publish("first")
	c.converged("web-1")
	cut.Store(true)
	writeTree(t, c.source, map[string]string{"index.php": "<?php echo 2;"})
	c.publish("second")
	testutil.Eventually(t, 10*time.Second, func() error {
		if st := web.Status().Revision; st.Target == nil || st.Target.Seq != 2 || st.InSync {
			return fmt.Errorf("web-1 revision %+v, want target 2 not applied", st)
		}
		return nil
	})
	if err := web.Close(); err != nil {
		t.Fatal(err)
	}
	ctlCfg := c.config("controller", "controller")
	ctlCfg.Mirror.Source = c.source
	ctlCfg.Gossip.Bind = c.ctl.GossipAddr()
	if err := c.ctl.Close(); err != nil {
		t.Fatal(err)
	}

	rec := &testutil.LogRecorder{}
	web = c.open(webCfg, c.key, withLogger(rec)) // its join address is dead now
	testutil.Eventually(t, 10*time.Second, func() error {
		if rec.Lines(slog.LevelWarn, "gossip join failed") == 0 {
			return errors.New("web-1 has not tried to join yet")
		}
		return nil
	})
	c.ctl = c.open(ctlCfg, c.key) // rejoins web-1, which it remembers
	c.converged("web-1")
	if n := rec.Lines(slog.LevelError, "no live controller"); n != 0 {
		t.Errorf("%d errors about no live controller while web-1 had not joined yet", n)
	}
}

func cutTransportWrapper(cut *atomic.Bool) func(http.RoundTripper) http.RoundTripper {
	return func(rt http.RoundTripper) http.RoundTripper { return cutTransport{cut, rt} }
}

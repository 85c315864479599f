package agent_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/agent"
	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// moodleStandIn answers like Moodle: while climaintenance.html exists in
// dataroot, 503 with its content to everyone (admins too); else 200.
func moodleStandIn(t *testing.T, dataroot string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Moodle-Stand-In", "1")
		if page, err := os.ReadFile(filepath.Join(dataroot, "climaintenance.html")); err == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write(page)
			return
		}
		io.WriteString(w, "moodle front page")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// moodleCluster is a controller holding Moodle's dataroot (with
// maintenance.allow set on the controller only) and web-1 whose edge
// proxies to a Moodle stand-in reading that dataroot (shared moodledata).
// The edge believes X-Forwarded-For from 127.0.0.1, so a test picks each
// request's client address.
type moodleCluster struct {
	*cluster
	dataroot string
	web      *agent.Agent
}

// withDataroot reopens the controller with a Moodle dataroot (and the
// given maintenance.allow) and returns the dataroot.
func (c *cluster) withDataroot(allow []string, adjust ...func(*agent.Options)) string {
	c.t.Helper()
	dataroot := filepath.Join(c.dir, "moodledata")
	if err := os.MkdirAll(dataroot, 0o755); err != nil {
		c.t.Fatal(err)
	}
	c.ctl.Close()
	cfg := c.config("controller", "controller")
	cfg.Mirror.Source, cfg.Gossip.Join = c.source, nil
	cfg.Maintenance.MoodleDataroot = dataroot
	cfg.Maintenance.Allow = allow
	c.ctl = c.open(cfg, c.key, adjust...)
	return dataroot
}

func newMoodleCluster(t *testing.T, allow ...string) *moodleCluster {
	t.Helper()
	c := newCluster(t)
	mc := &moodleCluster{cluster: c}
	mc.dataroot = c.withDataroot(allow)
	backend := moodleStandIn(t, mc.dataroot)
	wcfg := c.config("web-1", "web")
	wcfg.Edge = &config.EdgeConfig{HTTPS: "127.0.0.1:0", Backend: backend.URL, TrustedProxies: []string{"127.0.0.1/32"}}
	mc.web = c.open(wcfg, c.key)
	c.webs["web-1"] = mc.web
	c.publish("first")
	c.converged("web-1")
	return mc
}

// answer is what a client at addr gets from the edge.
type answer struct {
	code    int
	body    string
	standIn bool // answered by Moodle (the stand-in), not the edge
}

func (mc *moodleCluster) get(t *testing.T, client string) (answer, error) {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req, _ := http.NewRequest("GET", "https://"+mc.web.EdgeAddr()+"/course/view.php?id=2", nil)
	req.Header.Set("X-Forwarded-For", client)
	resp, err := hc.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, body: string(b), standIn: resp.Header.Get("X-Moodle-Stand-In") == "1"}, nil
}

// expect waits until a client at addr gets code from Moodle (standIn) or
// from the edge, with a body containing want.
func (mc *moodleCluster) expect(t *testing.T, client string, code int, standIn bool, want string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() error {
		a, err := mc.get(t, client)
		if err != nil {
			return err
		}
		if a.code != code || a.standIn != standIn || !strings.Contains(a.body, want) {
			return fmt.Errorf("client %s: %d from Moodle %v %q; want %d from Moodle %v with %q", client, a.code, a.standIn, a.body, code, standIn, want)
		}
		return nil
	})
}

const (
	adminClient  = "10.1.2.3"     // inside maintenance.allow (set on the controller)
	publicClient = "198.51.100.7" // outside
)

func (mc *moodleCluster) setMaintenance(t *testing.T, a *agent.Agent, req api.MaintenanceRequest) {
	t.Helper()
	if code, _, body := call(t, "PUT", "http://"+a.LocalAddr()+"/v1/maintenance", testToken, req); code != 200 {
		t.Fatalf("PUT /v1/maintenance: %d %s", code, body)
	}
}

// TestSiteMaintenanceLetsAllowedClientsIn: during site maintenance the
// public gets the page with the maintenance message, while a client in
// maintenance.allow — set on the controller only — reaches a working
// Moodle through the edge. The Moodle hold makes Moodle itself refuse
// everyone, as Moodle does.
func TestSiteMaintenanceLetsAllowedClientsIn(t *testing.T) {
	mc := newMoodleCluster(t, "10.0.0.0/8")
	mc.expect(t, publicClient, http.StatusOK, true, "moodle front page")

	mc.setMaintenance(t, mc.web, api.MaintenanceRequest{Enabled: true, Message: "Back at 10:00"})
	mc.expect(t, publicClient, http.StatusServiceUnavailable, false, "Back at 10:00")
	mc.expect(t, adminClient, http.StatusOK, true, "moodle front page")
	if _, err := os.Stat(filepath.Join(mc.dataroot, "climaintenance.html")); !os.IsNotExist(err) {
		t.Fatalf("site maintenance holds Moodle: %v", err)
	}
	var m api.Maintenance
	getJSON(t, mc.web, "/v1/maintenance", &m)
	if len(m.ConfigAllow) != 1 || m.ConfigAllow[0] != "10.0.0.0/8" || !m.Active || m.MoodleActive {
		t.Fatalf("GET /v1/maintenance on web-1: %+v", m)
	}

	mc.setMaintenance(t, mc.ctl, api.MaintenanceRequest{Enabled: true, Moodle: true, Message: "Upgrading"})
	mc.expect(t, adminClient, http.StatusServiceUnavailable, true, "Upgrading")
	mc.expect(t, publicClient, http.StatusServiceUnavailable, false, "Upgrading")

	mc.setMaintenance(t, mc.web, api.MaintenanceRequest{})
	mc.expect(t, publicClient, http.StatusOK, true, "moodle front page")
	mc.expect(t, adminClient, http.StatusOK, true, "moodle front page")
}

// TestDeployHoldsMoodleDuringRun: while a deploy's -run command runs,
// Moodle is held (the stand-in sees climaintenance.html) for allowed
// clients too; the public meanwhile gets the maintenance message, never
// the revision's message; afterwards Moodle works again.
func TestDeployHoldsMoodleDuringRun(t *testing.T) {
	mc := newMoodleCluster(t, "10.0.0.0/8")
	writeTree(t, mc.source, map[string]string{"version.php": "<?php $version = 2;"})
	d, proceed := mc.heldDeploy(t, map[string]any{"message": "fix MDL-1234 secret detail", "maintenance": true,
		"maintenance_message": "Upgrading to 4.5"})
	mc.expect(t, adminClient, http.StatusServiceUnavailable, true, "Upgrading to 4.5")
	a, err := mc.get(t, publicClient)
	if err != nil || a.code != http.StatusServiceUnavailable || a.standIn || !strings.Contains(a.body, "Upgrading to 4.5") ||
		strings.Contains(a.body, "MDL-1234") {
		t.Fatalf("the public during the run: %+v %v", a, err)
	}
	if d = mc.finish(t, d, proceed); d.Status != api.DeploySucceeded || !strings.Contains(step(d, "run").Detail, "Moodle held") {
		t.Fatalf("deploy: %+v", d)
	}
	mc.expect(t, adminClient, http.StatusOK, true, "moodle front page")
	mc.expect(t, publicClient, http.StatusOK, true, "moodle front page")
}

// heldDeploy starts a deploy whose -run command waits for the file
// proceed, and returns once the command runs (with Moodle held).
func (mc *moodleCluster) heldDeploy(t *testing.T, body map[string]any) (d api.Deploy, proceed string) {
	t.Helper()
	proceed = filepath.Join(mc.dir, "proceed")
	body["run"] = "while [ ! -e " + proceed + " ]; do sleep 0.05; done"
	code, _, resp := call(t, "POST", "http://"+mc.ctl.LocalAddr()+"/v1/deploys", testToken, body)
	if code != http.StatusAccepted {
		t.Fatalf("deploy: %d %s", code, resp)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		getJSON(t, mc.ctl, "/v1/deploys/"+idOf(t, resp), &d)
		if s := step(d, "run"); s.Status != api.DeployRunning {
			return fmt.Errorf("run step %s (deploy %s)", s.Status, d.Status)
		}
		return nil
	})
	return d, proceed
}

// finish lets the command of heldDeploy end and returns the deploy once it
// ended.
func (mc *moodleCluster) finish(t *testing.T, d api.Deploy, proceed string) api.Deploy {
	t.Helper()
	if err := os.WriteFile(proceed, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		getJSON(t, mc.ctl, "/v1/deploys/"+d.ID, &d)
		if d.Status == api.DeployRunning {
			return errors.New("still running")
		}
		return nil
	})
	return d
}

func idOf(t *testing.T, body []byte) string {
	t.Helper()
	var d api.Deploy
	if err := jsonUnmarshal(body, &d); err != nil || d.ID == "" {
		t.Fatalf("no id in %s (%v)", body, err)
	}
	return d.ID
}

// logRecorder keeps the WARN and ERROR lines of agents (memberlist's own
// aside).
type logRecorder struct {
	mu    sync.Mutex
	lines []string
	attrs []slog.Attr
}

func (l *logRecorder) Enabled(_ context.Context, lvl slog.Level) bool { return lvl >= slog.LevelWarn }
func (l *logRecorder) WithGroup(string) slog.Handler                  { return l }
func (l *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &logView{l, as}
}
func (l *logRecorder) Handle(ctx context.Context, r slog.Record) error {
	return (&logView{l, nil}).Handle(ctx, r)
}

type logView struct {
	l     *logRecorder
	attrs []slog.Attr
}

func (v *logView) Enabled(ctx context.Context, lvl slog.Level) bool { return v.l.Enabled(ctx, lvl) }
func (v *logView) WithGroup(string) slog.Handler                    { return v }
func (v *logView) WithAttrs(as []slog.Attr) slog.Handler {
	return &logView{v.l, append(append([]slog.Attr(nil), v.attrs...), as...)}
}
func (v *logView) Handle(_ context.Context, r slog.Record) error {
	line := r.Level.String() + " " + r.Message
	for _, a := range v.attrs {
		if a.Key == "subsystem" && a.Value.String() == "memberlist" {
			// memberlist's failure detector (a probe timing out on a
			// loaded machine) says nothing about the agent's own work.
			return nil
		}
		line += " " + a.String()
	}
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	v.l.mu.Lock()
	v.l.lines = append(v.l.lines, line)
	v.l.mu.Unlock()
	return nil
}

func (l *logRecorder) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// TestMaintenanceToggleRace: 200 rapid toggles of the Moodle hold from two
// nodes at once. No agent logs a WARN or ERROR line (before: "rename
// …climaintenance.html.nodeagent-tmp: no such file or directory"), and
// climaintenance.html ends as the final register says.
func TestMaintenanceToggleRace(t *testing.T) {
	logs := &logRecorder{}
	withLog := func(o *agent.Options) { o.Logger = slog.New(logs) }
	c := newCluster(t)
	dataroot := c.withDataroot(nil, withLog)
	web := c.open(c.config("web-1", "web"), c.key, withLog)
	c.publish("first")
	c.converged("web-1")
	if lines := logs.take(); len(lines) > 0 {
		t.Fatalf("warnings before the test:\n%s", strings.Join(lines, "\n"))
	}

	var wg sync.WaitGroup
	for i, a := range []*agent.Agent{c.ctl, web} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 100; n++ {
				req := api.MaintenanceRequest{}
				if (n+i)%2 == 0 {
					req = api.MaintenanceRequest{Enabled: true, Moodle: true, Message: fmt.Sprintf("toggle %d/%d", i, n)}
				}
				if code, _, body := call(t, "PUT", "http://"+a.LocalAddr()+"/v1/maintenance", testToken, req); code != 200 {
					t.Errorf("PUT %d from node %d: %d %s", n, i, code, body)
				}
			}
		}()
	}
	wg.Wait()
	page := filepath.Join(dataroot, "climaintenance.html")
	testutil.Eventually(t, 15*time.Second, func() error {
		ctl, w := status(t, c.ctl).Maintenance, status(t, web).Maintenance
		if ctl.Clock != w.Clock || !ctl.Applied || !w.Applied {
			return fmt.Errorf("nodes disagree or lag: controller %+v, web-1 %+v", ctl, w)
		}
		_, err := os.Stat(page)
		if exists := err == nil; exists != ctl.MoodleActive {
			return fmt.Errorf("climaintenance.html exists %v, final register holds Moodle %v (%+v)", exists, ctl.MoodleActive, ctl)
		}
		return nil
	})
	if lines := logs.take(); len(lines) > 0 {
		t.Fatalf("%d WARN/ERROR lines during the toggles:\n%s", len(lines), strings.Join(lines, "\n"))
	}
}

// TestDeployHoldOutlastsMaintenanceUntil: site maintenance an operator put
// on with an end (maintenance on -for) does not end the Moodle hold of a
// deploy's -run step: Moodle stays held (climaintenance.html) until the
// command is done, past the end; then, the end being past, maintenance is
// off. Before, the hold took the until over and Moodle served (and ran its
// cron) in the middle of the upgrade.
func TestDeployHoldOutlastsMaintenanceUntil(t *testing.T) {
	mc := newMoodleCluster(t, "10.0.0.0/8")
	until := time.Now().Add(10 * time.Second).UTC() // the run step starts well before, on a loaded machine too
	mc.setMaintenance(t, mc.ctl, api.MaintenanceRequest{Enabled: true, Message: "Back soon", Until: &until})
	d, proceed := mc.heldDeploy(t, map[string]any{})
	if s := step(d, "run"); s.Started == nil || !s.Started.Before(until) {
		t.Fatalf("the run step started at %v, after the maintenance's end %v: nothing tested", s.Started, until)
	}
	page := filepath.Join(mc.dataroot, "climaintenance.html")
	testutil.Eventually(t, 10*time.Second, func() error { _, err := os.Stat(page); return err }) // the step holds Moodle first
	for time.Now().Before(until.Add(2500 * time.Millisecond)) {                                  // the watch loop applies an end within a second
		if _, err := os.Stat(page); err != nil {
			t.Fatalf("Moodle released while the command runs (the maintenance's end %v passed): %v", until, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	mc.expect(t, adminClient, http.StatusServiceUnavailable, true, "")
	if d = mc.finish(t, d, proceed); d.Status != api.DeploySucceeded {
		t.Fatalf("deploy: %+v", d)
	}
	var m api.Maintenance
	getJSON(t, mc.ctl, "/v1/maintenance", &m)
	if m.Active || m.MoodleActive {
		t.Fatalf("maintenance after the deploy, its end past: %+v", m)
	}
	mc.expect(t, publicClient, http.StatusOK, true, "moodle front page")
}

// TestDeployRetryEndsWhatTheFailedOneLeft: a deploy whose -run command
// fails leaves site maintenance on and Moodle held, as it must; the retry
// after the fix, once it succeeds, ends both: the site is back. Before, the
// retry took the maintenance for an operator's ("already on: left as it
// is", "Moodle already held"), reported success and left the site down.
// The same without -maintenance: a retried -run releases the hold the
// failed one left.
func TestDeployRetryEndsWhatTheFailedOneLeft(t *testing.T) {
	mc := newMoodleCluster(t, "10.0.0.0/8")
	page := filepath.Join(mc.dataroot, "climaintenance.html")
	for _, maint := range []bool{true, false} {
		d := runDeploy(t, mc.ctl, map[string]any{"message": "upgrade", "maintenance": maint, "run": "echo broken; exit 3"})
		if d.Status != api.DeployFailed {
			t.Fatalf("deploy with a failing command: %+v", d)
		}
		if _, err := os.Stat(page); err != nil {
			t.Fatalf("Moodle not held after the failed upgrade: %v", err)
		}
		d = runDeploy(t, mc.ctl, map[string]any{"message": "upgrade, fixed", "maintenance": maint, "run": "true"})
		if d.Status != api.DeploySucceeded {
			t.Fatalf("the retry: %+v", d)
		}
		var m api.Maintenance
		getJSON(t, mc.ctl, "/v1/maintenance", &m)
		if m.Active || m.MoodleActive {
			t.Fatalf("maintenance %v: after the retry succeeded, maintenance stays: %+v\nsteps %+v", maint, m, d.Steps)
		}
		if _, err := os.Stat(page); !os.IsNotExist(err) {
			t.Fatalf("maintenance %v: climaintenance.html after the retry succeeded: %v", maint, err)
		}
		mc.expect(t, publicClient, http.StatusOK, true, "moodle front page")
	}
}

// TestDeployKeepsAnOperatorsHold: a Moodle hold an operator set, with an
// end, stays theirs through a deploy with -maintenance: afterwards it is
// still on, with its end and without the deploy's reason, so it ends when
// they said and a later deploy does not take it for one a failed deploy
// left. Before, the deploy's site maintenance dropped the end and wrote
// its own reason over the hold's.
func TestDeployKeepsAnOperatorsHold(t *testing.T) {
	mc := newMoodleCluster(t, "10.0.0.0/8")
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	mc.setMaintenance(t, mc.ctl, api.MaintenanceRequest{Moodle: true, Message: "Held by the admin", Until: &until})
	d := runDeploy(t, mc.ctl, map[string]any{"message": "code only", "maintenance": true})
	if d.Status != api.DeploySucceeded {
		t.Fatalf("deploy: %+v", d)
	}
	var m api.Maintenance
	getJSON(t, mc.ctl, "/v1/maintenance", &m)
	if m.Active || !m.MoodleActive || m.Until == nil || !m.Until.Equal(until) || m.Reason != "" {
		t.Fatalf("the operator's hold after the deploy: %+v", m)
	}
	if _, err := os.Stat(filepath.Join(mc.dataroot, "climaintenance.html")); err != nil {
		t.Fatalf("the operator's hold was released: %v", err)
	}
}

// TestDeployStoppedByTheAgentSaysSo: a -run command cut short because the
// controller's agent stops (a restart, a package upgrade) is reported as
// that, not as a bare "signal: killed" that reads like the command's own
// crash; Moodle stays held.
func TestDeployStoppedByTheAgentSaysSo(t *testing.T) {
	mc := newMoodleCluster(t)
	d, _ := mc.heldDeploy(t, map[string]any{"message": "upgrade"})
	mc.ctl.Close()
	d, err := mc.ctl.Deploy(d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != api.DeployFailed || !strings.Contains(step(d, "run").Detail, "killed: the agent is stopping") {
		t.Fatalf("deploy cut by the agent's stop: %+v", d)
	}
	if _, err := os.Stat(filepath.Join(mc.dataroot, "climaintenance.html")); err != nil {
		t.Fatalf("Moodle released after a cut upgrade: %v", err)
	}
}

// TestDeployHoldShowsTheMaintenanceMessage: without -maintenance, the
// Moodle hold of -run shows -maintenance-message (or the generic upgrade
// notice), as the API documents, not Moodle's default text; never -m.
func TestDeployHoldShowsTheMaintenanceMessage(t *testing.T) {
	mc := newMoodleCluster(t)
	d, proceed := mc.heldDeploy(t, map[string]any{"message": "MDL-1234 internal", "maintenance_message": "Back at ten"})
	testutil.Eventually(t, 10*time.Second, func() error {
		b, err := os.ReadFile(filepath.Join(mc.dataroot, "climaintenance.html"))
		if err != nil || !strings.Contains(string(b), "Back at ten") || strings.Contains(string(b), "MDL-1234") {
			return fmt.Errorf("climaintenance.html: %v %q", err, b)
		}
		return nil
	})
	if d = mc.finish(t, d, proceed); d.Status != api.DeploySucceeded {
		t.Fatalf("deploy: %+v", d)
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
)

func runRollback(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("rollback")
	var cf clientFlags
	var req api.RollbackRequest
	fs.BoolVar(&req.Force, "force", false, "roll back even when a mirror.pinned file (config.php: the database settings) differs")
	fs.BoolVar(&req.AllowMissing, "allow-missing", false, "with deploy.after_all: run it even when fewer web nodes serve the revision than the cluster had")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: nodeagent rollback [flags] REV

REV is a revision seq or id prefix (see `+"`nodeagent revisions`"+`). A revision whose
config.php (or another mirror.pinned file) differs from the target's is refused,
naming the database settings that would change: after a database switch it would
move the site back to the old database. -force rolls back all the same.`)
		fs.PrintDefaults()
	}
	cf.register(fs)
	refs, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(refs) != 1 {
		return usagef("rollback takes one revision (seq or id prefix), got %d arguments (see -h)", len(refs))
	}
	req.Revision = refs[0]
	c, err := cf.client()
	if err != nil {
		return err
	}
	var res api.RollbackResponse
	if _, err := c.do(ctx, http.MethodPost, "/v1/rollback", req, &res); err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	if cf.json {
		return printJSON(out, res)
	}
	fmt.Fprintf(out, "cluster target is now revision %d (%s)\n", res.Target.Seq, shortID(res.Target.ID))
	for _, ch := range res.PinnedChanges {
		fmt.Fprintf(out, "  forced across a pinned file: %s\n", ch)
	}
	return followUp(ctx, c, out, res.FollowUp)
}

// cidrList is a repeatable -allow flag.
type cidrList []string

func (l *cidrList) String() string     { return strings.Join(*l, ",") }
func (l *cidrList) Set(s string) error { *l = append(*l, s); return nil }

const maintenanceUsage = "usage: nodeagent maintenance on [-m MSG] [-allow CIDR]... [-for DURATION] [-moodle] | off | status"

func runMaintenance(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return usagef("%s", maintenanceUsage)
	}
	sub := args[0]
	switch sub {
	case "on", "off", "status":
	default:
		return usagef("maintenance: unknown subcommand %q (on, off, status)", sub)
	}
	fs := newFlags("maintenance " + sub)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), maintenanceUsage+`

Two levels, as Moodle has two:
  site maintenance (on): every web node's edge answers clients outside the
    allow list (-allow, and every node's maintenance.allow) with the
    maintenance page; allowed clients reach a working Moodle.
  Moodle hold (on -moodle): also Moodle's own climaintenance.html in its
    dataroot (maintenance.moodle_dataroot on the controller): Moodle answers
    503 to everyone, allowed clients too, and its cron stops, as
    admin/cli/maintenance.php --enable does. deploy -run holds Moodle by
    itself while its command runs.
off ends both.`)
		fs.PrintDefaults()
	}
	var cf clientFlags
	msg := fs.String("m", "", "message shown on the maintenance page")
	var allow cidrList
	fs.Var(&allow, "allow", "CIDR let through during maintenance (repeatable), besides every node's maintenance.allow")
	dur := fs.Duration("for", 0, "end maintenance by itself after this long (e.g. 30m)")
	hold := fs.Bool("moodle", false, "also hold Moodle itself (climaintenance.html): 503 for everyone, cron stopped")
	c, err := cf.parse(fs, args[1:], 0)
	if err != nil {
		return err
	}
	var m api.Maintenance
	switch sub {
	case "on":
		req := api.MaintenanceRequest{Enabled: true, Moodle: *hold, Message: *msg, Allow: allow}
		if *dur < 0 {
			return usagef("-for must be positive")
		}
		if *dur > 0 {
			until := time.Now().Add(*dur).UTC()
			req.Until = &until
		}
		_, err = c.do(ctx, http.MethodPut, "/v1/maintenance", req, &m)
	case "off":
		_, err = c.do(ctx, http.MethodPut, "/v1/maintenance", api.MaintenanceRequest{}, &m)
	case "status":
		_, err = c.do(ctx, http.MethodGet, "/v1/maintenance", nil, &m)
	}
	if err != nil {
		return fmt.Errorf("maintenance %s: %w", sub, err)
	}
	if cf.json {
		return printJSON(out, m)
	}
	printMaintenance(out, m)
	return nil
}

func printMaintenance(out io.Writer, m api.Maintenance) {
	if !m.Active && !m.MoodleActive {
		fmt.Fprintln(out, "maintenance: off")
		if len(m.ConfigAllow) > 0 {
			fmt.Fprintf(out, "  maintenance.allow of the cluster: %s\n", strings.Join(m.ConfigAllow, ", "))
		}
		return
	}
	fmt.Fprint(out, "maintenance: ON")
	if m.Until != nil {
		fmt.Fprintf(out, " until %s (in %s)", m.Until.Local().Format(time.RFC3339), time.Until(*m.Until).Round(time.Second))
	}
	fmt.Fprintln(out)
	site, moodle := "off", "not held: Moodle serves the clients the edges let through"
	if m.Active {
		site = "on: the edges show the maintenance page to clients outside the allow list"
	}
	if m.MoodleActive {
		moodle = "HELD: climaintenance.html, Moodle answers 503 to everyone and its cron is stopped"
	}
	fmt.Fprintf(out, "  site:    %s\n  moodle:  %s\n", site, moodle)
	if m.Message != "" {
		fmt.Fprintf(out, "  message: %s\n", m.Message)
	}
	if m.Reason != "" {
		fmt.Fprintf(out, "  reason:  %s\n", m.Reason)
	}
	if len(m.Allow) > 0 {
		fmt.Fprintf(out, "  allow:   %s\n", strings.Join(m.Allow, ", "))
	}
	if len(m.ConfigAllow) > 0 {
		fmt.Fprintf(out, "  allow (maintenance.allow): %s\n", strings.Join(m.ConfigAllow, ", "))
	}
	fmt.Fprintf(out, "  set by:  %s (clock %d)\n", m.SetBy, m.Clock)
}

func runDrain(drained bool) func(context.Context, []string, io.Writer) error {
	name := "undrain"
	if drained {
		name = "drain"
	}
	return func(ctx context.Context, args []string, out io.Writer) error {
		fs := newFlags(name)
		var cf clientFlags
		c, err := cf.parse(fs, args, 0)
		if err != nil {
			return err
		}
		method := http.MethodDelete
		if drained {
			method = http.MethodPut
		}
		if _, err := c.do(ctx, method, "/v1/drain", nil, nil); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if drained {
			fmt.Fprintln(out, "drained: /readyz now fails, the load balancer takes this node out")
		} else {
			fmt.Fprintln(out, "undrained: /readyz follows the other checks again")
		}
		return nil
	}
}

func runDeploy(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("deploy")
	var cf clientFlags
	msg := fs.String("m", "", "message of the revision (never shown on the public maintenance page)")
	maint := fs.Bool("maintenance", false, "site maintenance on before publishing, off at the end (left on if it was on already)")
	page := fs.String("maintenance-message", "", "message of the maintenance pages (default: a generic upgrade notice)")
	run := fs.String("run", "", "command run on the controller, in the source tree as deploy.run_as, once every web node serves the new revision; Moodle is held (climaintenance.html) while it runs")
	allowMissing := fs.Bool("allow-missing", false, "go on when fewer web nodes serve the new revision than the cluster had (seen in the last hour, at least deploy.min_web)")
	c, err := cf.parse(fs, args, 0)
	if err != nil {
		return err
	}
	req := api.DeployRequest{Message: *msg, Maintenance: *maint, MaintenanceMessage: *page, Run: *run, AllowMissing: *allowMissing}
	var d api.Deploy
	if _, err := c.do(ctx, http.MethodPost, "/v1/deploys", req, &d); err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	return follow(ctx, c, out, cf.json, "deploy", "/v1/deploys/"+d.ID, &d, deployView)
}

func done(status string) bool { return status == api.DeployOK || status == api.DeployFailed }

func printStep(out io.Writer, s api.DeployStep) {
	mark := "ok"
	if s.Status == api.DeployFailed {
		mark = "FAILED"
	}
	fmt.Fprintf(out, "  %-20s %-6s %7.2fs", s.Name, mark, s.Seconds)
	if s.Detail != "" {
		fmt.Fprintf(out, "  %s", strings.ReplaceAll(s.Detail, "\n", "\n    "))
	}
	fmt.Fprintln(out)
}

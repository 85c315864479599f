package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/dump"
)

const dbUsage = `usage: nodeagent db dump [-wait] | dumps | restore NAME -host H [-port P] [-name DB] [-user U] [-password-file F] | restore -switch -host H [...] [-m MSG] [-allow-missing]`

// runDB runs the controller's database subcommands.
func runDB(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return usagef("%s", dbUsage)
	}
	switch args[0] {
	case "dump":
		return runDBDump(ctx, args[1:], out)
	case "dumps":
		return runDBDumps(ctx, args[1:], out)
	case "restore":
		return runDBRestore(ctx, args[1:], out)
	}
	return usagef("db: unknown subcommand %q (dump, dumps, restore)", args[0])
}

func runDBDump(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("db dump")
	var cf clientFlags
	wait := fs.Bool("wait", false, "wait until the dump is verified on disk; exit 1 if it fails")
	c, err := cf.parse(fs, args, 0)
	if err != nil {
		return err
	}
	path := "/v1/db/dumps"
	if *wait {
		path += "?wait=true"
	}
	var rec dump.Record
	if _, err := c.do(ctx, http.MethodPost, path, nil, &rec); err != nil {
		return fmt.Errorf("db dump: %w", err)
	}
	if cf.json {
		return printJSON(out, rec)
	}
	if rec.Status == dump.StatusRunning {
		fmt.Fprintf(out, "dump %s started; see `nodeagent db dumps`\n", rec.Name)
		return nil
	}
	fmt.Fprintf(out, "dump %s: %s in %.1fs, sha256 %s\n", rec.Name, byteSize(rec.Size), rec.Seconds, rec.SHA256)
	return nil
}

func runDBDumps(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("db dumps")
	var cf clientFlags
	c, err := cf.parse(fs, args, 0)
	if err != nil {
		return err
	}
	var l dump.Listing
	if _, err := c.do(ctx, http.MethodGet, "/v1/db/dumps", nil, &l); err != nil {
		return fmt.Errorf("db dumps: %w", err)
	}
	if cf.json {
		return printJSON(out, l)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSIZE\tSHA256\tSTARTED\tSECONDS\tTRIGGER")
	for _, r := range l.Dumps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1f\t%s\n", r.Name, byteSize(r.Size), shortID(r.SHA256), r.Started.Local().Format(time.DateTime), r.Seconds, r.Trigger)
	}
	tw.Flush()
	fmt.Fprintf(out, "\n%d dumps in %s (keep %d, schedule %q", len(l.Dumps), l.Dir, l.Keep, l.Schedule)
	if l.NextScheduled != nil {
		fmt.Fprintf(out, ", next %s", l.NextScheduled.Local().Format(time.DateTime))
	}
	fmt.Fprintln(out, ")")
	if r := l.Running; r != nil {
		fmt.Fprintf(out, "running: %s (%s), started %s\n", r.Name, r.Trigger, ago(r.Started))
	}
	if f := l.LastFailure; f != nil {
		fmt.Fprintf(out, "LAST FAILURE (%d since the agent started): %s, %s: %s\n", l.Failures, f.Started.Local().Format(time.DateTime), f.Name, f.Error)
	}
	return nil
}

func runDBRestore(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("db restore")
	var cf clientFlags
	var req api.RestoreRequest
	fs.StringVar(&req.Host, "host", "", "server to restore into (required)")
	fs.IntVar(&req.Port, "port", 0, "its port (default: the driver's, 5432 or 3306)")
	fs.StringVar(&req.Name, "name", "", "database name (default: db.name); created if missing, must be empty")
	fs.StringVar(&req.User, "user", "", "user (default: db.user)")
	fs.StringVar(&req.PasswordFile, "password-file", "", "file with the user's password, read by the agent (default: db.password_file)")
	fs.BoolVar(&req.Switch, "switch", false, "move the site: maintenance on, fresh dump, restore, rewrite config.php, publish, wait for every web node, maintenance off")
	fs.StringVar(&req.Message, "m", "", "maintenance page message (with -switch)")
	fs.BoolVar(&req.AllowMissing, "allow-missing", false, "with -switch: go on when fewer web nodes serve the new config.php than the cluster had")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), dbUsage+"\n\nNAME is a dump of `nodeagent db dumps`; with -switch, omit it: a fresh dump is taken once maintenance is on.")
		fs.PrintDefaults()
	}
	cf.register(fs)
	names, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	switch n := len(names); {
	case n == 1 && req.Switch:
		return usagef("db restore: -switch takes no dump NAME: it restores a fresh dump taken once maintenance is on")
	case n > 1 || n == 0 && !req.Switch:
		return usagef("db restore takes one dump NAME (or -switch), got %d arguments", n)
	}
	if len(names) == 1 {
		req.Dump = names[0]
	}
	if req.Host == "" {
		return usagef("db restore: -host is required")
	}
	if req.PasswordFile != "" {
		abs, err := filepath.Abs(req.PasswordFile)
		if err != nil {
			return err
		}
		req.PasswordFile = abs
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var r api.Restore
	if _, err := c.do(ctx, http.MethodPost, "/v1/db/restores", req, &r); err != nil {
		return fmt.Errorf("db restore: %w", err)
	}
	return follow(ctx, c, out, cf.json, "restore", "/v1/db/restores/"+r.ID, &r, func(r *api.Restore) runView {
		return runView{ID: r.ID, Status: r.Status, Error: r.Error, Steps: r.Steps, Seconds: r.Seconds}
	})
}

// parseInterspersed parses flags wherever they are among the arguments
// (`db restore NAME -host H` and `db restore -host H NAME`) and returns the
// arguments that are not flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return rest, nil
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

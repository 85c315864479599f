package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/mirror"
)

// runVerify checks the served release of this (web) node against its
// manifest; exit status 1 while anything differs.
func runVerify(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("verify")
	var cf clientFlags
	repair := fs.Bool("repair", false, "put back what differs (from kept releases or the controller), without a switch")
	c, err := cf.parse(fs, args, 0)
	if err != nil {
		return err
	}
	var rep mirror.VerifyReport
	if _, err := c.do(ctx, http.MethodPost, "/v1/verify", api.VerifyRequest{Repair: *repair}, &rep); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if cf.json {
		if err := printJSON(out, rep); err != nil {
			return err
		}
	} else {
		printVerify(out, rep)
	}
	if len(rep.Differences) > 0 {
		return errQuiet
	}
	return nil
}

func printVerify(out io.Writer, rep mirror.VerifyReport) {
	fmt.Fprintf(out, "release %d (%s): %d entries, %d files, %s checked by content in %.2fs\n",
		rep.Release.Seq, shortID(rep.Release.ID), rep.Entries, rep.Files, megabytes(rep.Bytes), rep.Seconds)
	if len(rep.Repaired) > 0 {
		fmt.Fprintf(out, "\nrepaired %d:\n", len(rep.Repaired))
		printDifferences(out, rep.Repaired)
	}
	if len(rep.Differences) == 0 {
		fmt.Fprintln(out, "\nthe release matches its manifest")
		return
	}
	fmt.Fprintf(out, "\n%d differences:\n", len(rep.Differences))
	printDifferences(out, rep.Differences)
	if len(rep.Repaired) == 0 {
		fmt.Fprintln(out, "\nrun 'nodeagent verify -repair' to put the published content back")
	}
}

func printDifferences(out io.Writer, diffs []mirror.Difference) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tPATH\tDETAIL")
	for _, d := range diffs {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", d.Kind, d.Path, d.Detail)
	}
	tw.Flush()
}

func megabytes(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// printIntegrity is the integrity line of `status` (web nodes).
func printIntegrity(out io.Writer, st *mirror.AuditStatus) {
	switch {
	case st == nil:
		return
	case !st.Enabled:
		fmt.Fprintln(out, "integrity: audit off (mirror.audit)")
	case st.CheckedAt.IsZero() && st.HashedAt.IsZero():
		fmt.Fprintln(out, "integrity: not audited yet")
	case st.Count > 0:
		fmt.Fprintf(out, "integrity: %d differences from the manifest (%s); run 'nodeagent verify'\n",
			st.Count, kindCounts(st.Kinds))
	default:
		fmt.Fprintf(out, "integrity: the served release matches its manifest (checked %s, content %s)\n",
			agoOr(st.CheckedAt), agoOr(st.HashedAt))
	}
}

func kindCounts(kinds map[string]int) string {
	s := ""
	for _, k := range mirror.Kinds {
		if kinds[k] > 0 {
			if s != "" {
				s += ", "
			}
			s += fmt.Sprintf("%s %d", k, kinds[k])
		}
	}
	return s
}

func agoOr(t time.Time) string {
	if t.IsZero() {
		return "not yet"
	}
	return ago(t)
}

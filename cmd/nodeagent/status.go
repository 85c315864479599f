package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
)

func runStatus(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("status")
	var cf clientFlags
	c, err := cf.parse(fs, args, 0)
	if err != nil {
		return err
	}
	var st api.Status
	if _, err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	var ms api.MemberList
	if _, err := c.do(ctx, http.MethodGet, "/v1/members", nil, &ms); err != nil {
		return fmt.Errorf("members: %w", err)
	}
	if cf.json {
		return printJSON(out, map[string]any{"node": st, "members": ms.Members})
	}
	target := "none"
	if t := st.Revision.Target; t != nil {
		target = fmt.Sprintf("%d (%s)", t.Seq, shortID(t.ID))
	}
	fmt.Fprintf(out, "cluster target: %s\n", target)
	fmt.Fprintf(out, "this node: %s (%s)\n", st.Node, st.Role)
	printMaintenance(out, st.Maintenance.Maintenance)
	printSplit(out, st.Gossip)
	printIntegrity(out, st.Integrity)
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tADDRESS\tSTATE\tREVISION\tIN SYNC\tLAG\tDRAINED\tMAINTENANCE\tCERT EXPIRY")
	for _, m := range ms.Members {
		rev, sync := "-", "-"
		if m.Revision != nil {
			rev = fmt.Sprintf("%d (%s)", m.Revision.Seq, shortID(m.Revision.ID))
		}
		if st.Revision.Target != nil && m.Role == "web" {
			sync = yesNo(m.Revision != nil && m.Revision.ID == st.Revision.Target.ID)
		}
		lag := "-"
		if m.BehindSince != nil {
			lag = time.Since(*m.BehindSince).Round(time.Second).String()
		}
		maint := "off"
		if m.Maintenance.Active {
			maint = "on"
		}
		if m.Maintenance.Clock != st.Maintenance.Clock {
			maint += " (not applied yet)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			m.Name, m.Role, m.Address, m.State, rev, sync, lag, yesNo(m.Drained), maint, certExpiry(m.CertificateNotAfter))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	printSyncing(ctx, c, out, st, ms.Members)
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

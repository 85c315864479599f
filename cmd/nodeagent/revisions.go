package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/nodeagent/nodeagent/internal/api"
)

func runRevisions(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("revisions")
	var cf clientFlags
	c, err := cf.parse(fs, args, 0)
	if err != nil {
		return err
	}
	var list api.RevisionList
	if _, err := c.do(ctx, http.MethodGet, "/v1/revisions", nil, &list); err != nil {
		return fmt.Errorf("revisions: %w", err)
	}
	if cf.json {
		return printJSON(out, list)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tID\tCREATED\tFILES\tCHANGED\tMESSAGE\t")
	for _, r := range list.Revisions {
		mark := ""
		if r.Target {
			mark += " <- target"
		}
		if r.Applied {
			mark += " <- applied"
		}
		if len(r.PinnedChanged) > 0 {
			mark += " (" + strings.Join(r.PinnedChanged, ", ") + " changed)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%s\n", r.Seq, shortID(r.ID), ago(r.Created), r.Files, r.Changed, r.Message, mark)
	}
	return tw.Flush()
}

package main

import (
	"fmt"
	"io"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
)

// printSplit tells what this node sees of a split: on a web node, a
// controller unseen for long enough that gossip:controller warns; on the
// controller, the web nodes it saw in the last hour and no longer sees.
func printSplit(out io.Writer, g *api.GossipStatus) {
	if g == nil {
		return
	}
	if c := g.Controller; c != nil && c.Missing {
		fmt.Fprintf(out, "WARNING: no live controller seen for %s", (time.Duration(c.UnseenSeconds) * time.Second).String())
		if c.LastSeen != nil {
			fmt.Fprintf(out, " (%s last seen %s)", c.Name, c.LastSeen.Local().Format(time.RFC3339))
		}
		fmt.Fprintln(out, ": this node keeps serving its release but gets no new revision")
	}
	for _, m := range g.MissingWeb {
		fmt.Fprintf(out, "WARNING: web node %s is %s since %s (%s ago); removed for good? nodeagent forget %s\n",
			m.Name, m.State, m.Since.Local().Format(time.RFC3339), time.Since(m.Since).Round(time.Second), m.Name)
	}
}

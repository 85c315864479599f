package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/mirror"
	"github.com/nodeagent/nodeagent/internal/progress"
)

// printSyncing shows, for every web node syncing now (this one from its
// own status, the others as they answer GET /v1/nodes), where its content
// comes from; and what this node sent to its peers. Nothing is asked of
// the other nodes while none of them is behind.
func printSyncing(ctx context.Context, c *apiClient, out io.Writer, st api.Status, members []api.Member) {
	reports := []api.NodeReport{{Name: st.Node, Status: &st}}
	if othersBehind(st.Node, members) {
		var nodes api.NodeReports
		if _, err := c.do(ctx, http.MethodGet, "/v1/nodes", nil, &nodes); err == nil {
			reports = nodes.Nodes
		}
	}
	title := false
	for _, r := range reports {
		if r.Status == nil || !syncingNow(r.Status) {
			continue
		}
		if !title {
			fmt.Fprintln(out, "\nsyncing (content by source):")
			title = true
		}
		fmt.Fprintf(out, "  %s\n", syncLine(r.Name, r.Status.Sync))
	}
	if pu := st.PeerUpload; pu != nil && pu.Requests > 0 {
		fmt.Fprintf(out, "\nsent to peers: %s in %d requests (%d refused as busy%s); limit %s, %d at once\n",
			progress.Bytes(pu.Bytes), pu.Requests, pu.Refused, alteredNote(pu.Altered), rateText(pu.Rate), pu.Concurrency)
	}
}

// othersBehind reports whether a web member other than self is behind the
// target.
func othersBehind(self string, members []api.Member) bool {
	for _, m := range members {
		if m.Name != self && m.Role == config.RoleWeb && m.BehindSince != nil && m.State == gossip.StateAlive {
			return true
		}
	}
	return false
}

// syncingNow reports whether a node's status shows a sync under way.
func syncingNow(st *api.Status) bool {
	return st.Sync != nil && st.Sync.Phase != "" && st.Sync.Phase != mirror.PhaseIdle
}

// syncLine is one node's sync: revision, phase, bytes, and each source.
func syncLine(node string, p *mirror.SyncProgress) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: revision %d (%s), %s, %s of %s:", node, p.Revision.Seq, shortID(p.Revision.ID),
		p.Phase, progress.Bytes(p.BytesDone), progress.Bytes(p.Bytes))
	if len(p.Sources) == 0 {
		b.WriteString(" nothing fetched yet")
	}
	for i, s := range p.Sources {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %s (%s) %s", s.Name, s.Kind, progress.Bytes(s.Bytes))
		if s.State != mirror.SourceOK && s.Until != nil {
			fmt.Fprintf(&b, " [%s for %s: %s]", s.State, time.Until(*s.Until).Round(time.Second), s.Reason)
		}
	}
	return b.String()
}

func alteredNote(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("; %d files altered on disk not sent: see the log", n)
}

func rateText(bytesPerSecond int64) string {
	if bytesPerSecond == 0 {
		return "none"
	}
	return config.ByteRate(bytesPerSecond).String()
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
)

// runWait waits until this node serves the cluster target, showing the
// sync's progress (a new web node's first copy, say). It keeps asking while
// the agent does not answer yet, so it can follow `systemctl start`.
func runWait(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("wait")
	var cf clientFlags
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long (0: never)")
	c, err := cf.parse(fs, args, 0)
	if err != nil {
		return err
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	p := newProgress("sync")
	defer p.Done()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		var st api.Status // fresh: omitted fields must not keep old values
		_, err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
		var ae *apiError
		switch {
		case errors.As(err, &ae):
			return err // a wrong token does not get better
		case err != nil:
			last = err
		case st.Revision.InSync:
			p.Done()
			if cf.json {
				return printJSON(out, st)
			}
			fmt.Fprintf(out, "in sync: %s serves seq %d  id %s\n", st.Node, st.Revision.Applied.Seq, shortID(st.Revision.Applied.ID))
			return nil
		default:
			last = waitingFor(st)
			if s, ok := syncSample(st); ok {
				p.Update(s)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not in sync after %s: %v", *timeout, last)
		case <-tick.C:
		}
	}
}

// waitingFor says why a node is not in sync yet.
func waitingFor(st api.Status) error {
	switch {
	case st.SyncError != "":
		return fmt.Errorf("last sync failed: %s", st.SyncError)
	case st.Revision.Target == nil:
		return errors.New("the cluster has no target revision yet (publish on the controller)")
	default:
		return fmt.Errorf("syncing to seq %d", st.Revision.Target.Seq)
	}
}

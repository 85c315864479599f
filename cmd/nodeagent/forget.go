package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
)

const forgetUsage = `usage: nodeagent forget [flags] NODE...

Forget members gone for good — a web VM deleted by a scale-in, or replaced
under another name — on every agent, also those down now, once they are
back: they no longer count among the web nodes the cluster had (deploy,
publish and rollback waits), nor show as missing on the controller, nor in
status. A member alive now is refused (stop its agent first), and so is
this node. A node started again later under a forgotten name is a member
again. Run it on any node that lists the members (usually the controller);
a scale-in hook can call it after deleting the VM.`

// forgetResult is one NODE's outcome, for -json.
type forgetResult struct {
	Node      string      `json:"node"`
	Forgotten *api.Member `json:"forgotten,omitempty"`
	Error     string      `json:"error,omitempty"`
}

func runForget(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("forget")
	fs.Usage = func() { fmt.Fprintln(fs.Output(), forgetUsage+"\n\nflags:"); fs.PrintDefaults() }
	var cf clientFlags
	cf.register(fs)
	names, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return usagef("forget takes one or more node names (see -h)")
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	results := make([]forgetResult, len(names))
	failed := 0
	for i, name := range names {
		results[i] = forgetOne(ctx, c, name)
		if results[i].Error != "" {
			failed++
		}
	}
	if cf.json {
		if err := printJSON(out, results); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			printForget(out, r)
		}
	}
	if failed > 0 {
		return fmt.Errorf("forget: %d of %d not forgotten", failed, len(names))
	}
	return nil
}

// forgetOne asks the agent to forget one member.
func forgetOne(ctx context.Context, c *apiClient, name string) forgetResult {
	var res api.ForgetResponse
	if _, err := c.do(ctx, http.MethodDelete, "/v1/members/"+url.PathEscape(name), nil, &res); err != nil {
		return forgetResult{Node: name, Error: err.Error()}
	}
	return forgetResult{Node: name, Forgotten: &res.Forgotten}
}

func printForget(out io.Writer, r forgetResult) {
	if m := r.Forgotten; m != nil {
		fmt.Fprintf(out, "%s: forgotten (%s, %s at %s, last seen %s, %s ago)\n", r.Node, m.Role, m.State, m.Address,
			m.Since.Local().Format(time.RFC3339), time.Since(m.Since).Round(time.Second))
		return
	}
	fmt.Fprintf(out, "%s: not forgotten: %s\n", r.Node, r.Error)
}

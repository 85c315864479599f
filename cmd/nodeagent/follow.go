package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
)

// runView is what the CLI shows of a run made of steps (a deploy, a
// restore).
type runView struct {
	ID, Status, Error string
	Steps             []api.DeployStep
	Seconds           float64
}

// follow polls path into run until the run ends, printing each step as it
// ends (or, with -json, the final run), and fails quietly if the run did.
func follow[T any](ctx context.Context, c *apiClient, out io.Writer, asJSON bool, kind, path string, run *T, view func(*T) runView) error {
	v := view(run)
	if !asJSON {
		fmt.Fprintf(out, "%s %s\n", kind, v.ID)
	}
	shown := 0
	for {
		for ; shown < len(v.Steps) && done(v.Steps[shown].Status); shown++ {
			if !asJSON {
				printStep(out, v.Steps[shown])
			}
		}
		if v.Status != api.DeployRunning {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := c.do(ctx, http.MethodGet, path, nil, run); err != nil {
			return fmt.Errorf("%s %s: %w", kind, v.ID, err)
		}
		v = view(run)
	}
	if asJSON {
		if err := printJSON(out, run); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "%s %s %s in %.2fs\n", kind, v.ID, v.Status, v.Seconds)
	}
	if v.Status != api.DeploySucceeded {
		if !asJSON {
			fmt.Fprintf(out, "error: %s\n", v.Error)
		}
		return errQuiet
	}
	return nil
}

// followUp follows the after_all run of a publish or rollback (path from
// its answer; nothing without deploy.after_all): its steps, exit 1 if it
// fails.
func followUp(ctx context.Context, c *apiClient, out io.Writer, path string) error {
	if path == "" {
		return nil
	}
	var d api.Deploy
	if _, err := c.do(ctx, http.MethodGet, path, nil, &d); err != nil {
		return fmt.Errorf("follow-up %s: %w", path, err)
	}
	fmt.Fprintln(out, "deploy.after_all, once every web node serves it:")
	return follow(ctx, c, out, false, "follow-up", path, &d, deployView)
}

// deployView is what the CLI shows of a deploy.
func deployView(d *api.Deploy) runView {
	return runView{ID: d.ID, Status: d.Status, Error: d.Error, Steps: d.Steps, Seconds: d.Seconds}
}

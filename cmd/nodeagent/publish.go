package main

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/nodeagent/nodeagent/internal/api"
)

func runPublish(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("publish")
	var cf clientFlags
	msg := fs.String("m", "", "message recorded with the revision")
	c, err := cf.parse(fs, args, 0)
	if err != nil {
		return err
	}
	var res api.PublishResponse
	post := func() error {
		_, err := c.do(ctx, http.MethodPost, "/v1/revisions", api.PublishRequest{Message: *msg}, &res)
		return err
	}
	if cf.json {
		err = post()
	} else {
		err = c.withProgress(ctx, "publish", publishSample, post)
	}
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if cf.json {
		return printJSON(out, res)
	}
	state := "published"
	if res.Unchanged {
		state = "unchanged"
	}
	fmt.Fprintf(out, "%s: seq %d  id %s  files %d  changed %d  time %.3fs\n",
		state, res.Seq, shortID(res.ID), res.Files, res.Changed, res.Seconds)
	return nil
}

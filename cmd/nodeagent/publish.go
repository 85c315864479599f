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
	allowMissing := fs.Bool("allow-missing", false, "with deploy.after_all: run it even when fewer web nodes serve the new revision than the cluster had")
	c, err := cf.parse(fs, args, 0)
	if err != nil {
		return err
	}
	var res api.PublishResponse
	post := func() error {
		_, err := c.do(ctx, http.MethodPost, "/v1/revisions", api.PublishRequest{Message: *msg, AllowMissing: *allowMissing}, &res)
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
	if res.Unchanged {
		fmt.Fprintf(out, "unchanged: the source tree is revision %d  id %s  files %d  time %.3fs\n",
			res.Seq, shortID(res.ID), res.Files, res.Seconds)
	} else {
		fmt.Fprintf(out, "published: seq %d  id %s  files %d  changed %d  time %.3fs\n",
			res.Seq, shortID(res.ID), res.Files, res.Changed, res.Seconds)
	}
	return followUp(ctx, c, out, res.FollowUp)
}

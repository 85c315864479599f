package main

import (
	"context"
	"net/http"
	"os"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/progress"
)

// progressAfter is how long an operation runs before its progress shows:
// quick ones print only their result.
const progressAfter = time.Second

// newProgress returns a progress display on stderr: one line rewritten in
// place on a terminal, a plain line every few seconds otherwise.
func newProgress(label string) *progress.Printer {
	return progress.New(os.Stderr, label, progress.Options{TTY: progress.IsTerminal(os.Stderr)})
}

// withProgress runs op; while it runs, it polls /v1/status and shows what
// sample finds there.
func (c *apiClient) withProgress(ctx context.Context, label string, sample func(api.Status) (progress.Sample, bool), op func() error) error {
	done := make(chan error, 1)
	go func() { done <- op() }()
	p := newProgress(label)
	defer p.Done()
	wait := time.NewTimer(progressAfter)
	defer wait.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-wait.C:
			var st api.Status
			if _, err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st); err == nil {
				if s, ok := sample(st); ok {
					p.Update(s)
				}
			}
			wait.Reset(500 * time.Millisecond)
		}
	}
}

// publishSample is the controller's publish in progress.
func publishSample(st api.Status) (progress.Sample, bool) {
	p := st.Publish
	if p == nil || p.Phase == "" || p.Phase == "done" {
		return progress.Sample{}, false
	}
	return progress.Sample{Phase: p.Phase, FilesDone: p.FilesDone, Files: p.Files, BytesDone: p.BytesDone, Bytes: p.Bytes}, true
}

// syncSample is a web node's sync in progress.
func syncSample(st api.Status) (progress.Sample, bool) {
	s := st.Sync
	if s == nil || s.Phase == "" || s.Phase == "idle" {
		return progress.Sample{}, false
	}
	return progress.Sample{Phase: s.Phase, FilesDone: s.FilesDone, Files: s.Files, BytesDone: s.BytesDone, Bytes: s.Bytes}, true
}

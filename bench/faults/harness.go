package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/nodeagent/nodeagent/internal/faults"
)

// harness owns the cluster of a run and starts a fresh one when asked.
type harness struct {
	o      options
	work   string
	stderr io.Writer
	c      *faults.Cluster
	n      int // clusters started
}

// fresh replaces the cluster by a new one serving its first revision.
func (h *harness) fresh(ctx context.Context) error {
	h.close()
	h.n++
	opts := faults.Options{
		Binary:    h.o.bin,
		Dir:       filepath.Join(h.work, fmt.Sprintf("cluster-%d", h.n)),
		SmallDisk: "web-4",
	}
	if h.o.verbose {
		opts.Logf = func(format string, args ...any) {
			fmt.Fprintf(h.stderr, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
		}
	}
	c, err := faults.Start(opts)
	if err != nil {
		return err
	}
	h.c = c
	if _, err := c.Publish(ctx); err != nil {
		return fmt.Errorf("first publish: %w", err)
	}
	if _, err := c.WaitServing(ctx, time.Minute); err != nil {
		return fmt.Errorf("new cluster: %w", err)
	}
	return nil
}

// settled returns a cluster that serves its target: the current one, or a
// fresh one.
func (h *harness) settled(ctx context.Context) (*faults.Cluster, error) {
	if h.c != nil && h.c.Settle(ctx, 30*time.Second) == nil {
		return h.c, nil
	}
	if err := h.fresh(ctx); err != nil {
		return nil, err
	}
	return h.c, nil
}

func (h *harness) close() {
	if h.c != nil {
		if err := h.c.Close(); err != nil {
			fmt.Fprintln(h.stderr, "close cluster:", err)
		}
		h.c = nil
	}
}

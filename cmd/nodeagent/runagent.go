package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/nodeagent/nodeagent/internal/agent"
	"github.com/nodeagent/nodeagent/internal/config"
)

func runAgent(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("run")
	path := fs.String("config", config.DefaultPath, "config file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	log := config.NewLogger(cfg.Log, os.Stderr)
	ctx, stop := signalContext(ctx)
	defer stop()
	sd := newNotifier()
	// SIGHUP is caught from before Open until after Close: its default
	// action would kill the agent while it starts or leaves the cluster. A
	// HUP during Open is handled once the agent runs; one during Close is
	// ignored.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	a := agent.New(cfg, agent.Options{Version: version, Logger: log})
	if err := a.Open(ctx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	// Ready: the API listens and the node has joined (or keeps trying).
	if err := sd.notify("READY=1\nSTATUS=serving the local API on " + a.LocalAddr()); err != nil {
		log.Warn("tell systemd the agent is ready", "err", err)
	}
	reloadOnHUP(ctx, a, hup, log)
	log.Info("shutting down: leaving the cluster")
	if err := sd.notify("STOPPING=1\nSTATUS=leaving the cluster"); err != nil {
		log.Warn("tell systemd the agent is stopping", "err", err)
	}
	return a.Close()
}

// reloadOnHUP reloads the edge's certificate at every SIGHUP until ctx ends.
func reloadOnHUP(ctx context.Context, a *agent.Agent, hup <-chan os.Signal, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := a.ReloadCertificates(ctx); err != nil {
				log.Error("SIGHUP: certificate reload", "err", err)
			} else {
				log.Info("SIGHUP: certificate reloaded")
			}
		}
	}
}

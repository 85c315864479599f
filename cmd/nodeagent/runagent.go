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
	"github.com/nodeagent/nodeagent/internal/handoff"
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
	sd := handoff.NewNotifier()
	// The listening sockets kept across a restart: by systemd's fd store,
	// or by this process across a re-exec (SIGUSR2).
	sockets := handoff.New(handoff.Config{Notifier: sd, Logger: log})
	if err := sockets.Open(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	defer sockets.Close()
	// SIGHUP and SIGUSR2 are caught from before Open until after Close:
	// their default action would kill the agent while it starts or leaves
	// the cluster. One during Open is handled once the agent runs; one
	// during Close is ignored.
	hup, usr2 := make(chan os.Signal, 1), make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	signal.Notify(usr2, syscall.SIGUSR2)
	defer signal.Stop(hup)
	defer signal.Stop(usr2)
	a := agent.New(cfg, agent.Options{Version: version, Logger: log, Listen: sockets.Listen})
	if err := a.Open(ctx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	sockets.Release()
	if err := sockets.Store(); err != nil {
		log.Warn("keep the listening sockets in systemd's fd store", "err", err)
	}
	// Ready: the API listens and the node has joined (or keeps trying).
	if err := sd.Notify("READY=1\nSTATUS=serving the local API on " + a.LocalAddr()); err != nil {
		log.Warn("tell systemd the agent is ready", "err", err)
	}
	reexec := handleSignals(ctx, a, hup, usr2, log)
	state := "STOPPING=1\nSTATUS=leaving the cluster"
	if reexec {
		// RELOADING, not STOPPING: the same process comes back, and
		// systemd waits for its READY=1.
		log.Info("SIGUSR2: restarting in place with the binary on disk; the listening sockets stay open")
		state = "RELOADING=1\nSTATUS=restarting in place"
	} else {
		log.Info("shutting down: leaving the cluster")
	}
	if err := sd.Notify(state); err != nil {
		log.Warn("tell systemd the agent is stopping", "err", err)
	}
	err = a.Close()
	if !reexec {
		return err
	}
	if err != nil {
		log.Warn("close before re-exec", "err", err)
	}
	return sockets.Reexec(os.Args[1:])
}

// handleSignals reloads the edge's certificate at every SIGHUP until ctx
// ends (SIGINT, SIGTERM) or a SIGUSR2 asks for a re-exec, which it reports.
func handleSignals(ctx context.Context, a *agent.Agent, hup, usr2 <-chan os.Signal, log *slog.Logger) (reexec bool) {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-usr2:
			return true
		case <-hup:
			if err := a.ReloadCertificates(ctx); err != nil {
				log.Error("SIGHUP: certificate reload", "err", err)
			} else {
				log.Info("SIGHUP: certificate reloaded")
			}
		}
	}
}

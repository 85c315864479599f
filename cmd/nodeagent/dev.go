package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/internal/agent"
	"github.com/nodeagent/nodeagent/internal/config"
)

func runDev(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("dev")
	webs := fs.Int("web", 2, "number of web nodes")
	dir := fs.String("dir", "./nodeagent-dev", "directory for the demo source tree and the nodes' data")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *webs < 1 || *webs > 20 {
		return usagef("-web must be between 1 and 20")
	}
	root, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	ctx, stop := signalContext(ctx)
	defer stop()
	log := config.NewLogger(config.LogConfig{Level: *level, Format: "text"}, os.Stderr)
	cl, err := startDevCluster(ctx, root, *webs, log)
	if err != nil {
		return err
	}
	cl.printIntro(out)
	<-ctx.Done()
	fmt.Fprintln(out, "\nstopping the dev cluster")
	return cl.close()
}

type devCluster struct {
	root     string
	token    string
	agents   []*agent.Agent
	cfgs     []*config.Config
	backends []*http.Server // web nodes: the demo backend behind each edge
}

func startDevCluster(ctx context.Context, root string, webs int, log *slog.Logger) (*devCluster, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	if err := writeDemoTree(filepath.Join(root, "source")); err != nil {
		return nil, fmt.Errorf("demo source tree: %w", err)
	}
	if _, err := devSecret(filepath.Join(root, "gossip.key"), config.GenerateKey); err != nil {
		return nil, err
	}
	token, err := devSecret(filepath.Join(root, "api.token"), config.GenerateKey)
	if err != nil {
		return nil, err
	}
	cl := &devCluster{root: root, token: token}
	keyCfg := config.Default()
	keyCfg.Gossip.KeyFile = filepath.Join(root, "gossip.key")
	rawKey, err := keyCfg.GossipKey()
	if err != nil {
		return nil, err
	}
	var join string
	for i := 0; i <= webs; i++ {
		cfg := devConfig(root, i, join)
		if i > 0 {
			backend, err := cl.startBackend(cfg.Mirror.Target)
			if err != nil {
				cl.close()
				return nil, err
			}
			cfg.Edge = &config.EdgeConfig{HTTPS: "127.0.0.1:0", Backend: backend}
		}
		if err := cfg.Validate(); err != nil {
			cl.close()
			return nil, err
		}
		a := agent.New(cfg, agent.Options{Key: rawKey, Token: token, Version: version, Logger: log})
		if err := a.Open(ctx); err != nil {
			cl.close()
			return nil, fmt.Errorf("%s: %w", cfg.Node, err)
		}
		cl.agents = append(cl.agents, a)
		cl.cfgs = append(cl.cfgs, cfg)
		if i == 0 {
			join = a.GossipAddr()
			if _, _, err := a.Publish(ctx, "dev: initial tree"); err != nil {
				cl.close()
				return nil, fmt.Errorf("first publish: %w", err)
			}
		}
	}
	return cl, nil
}

func devConfig(root string, i int, join string) *config.Config {
	cfg := config.Default()
	cfg.Gossip.Bind = "127.0.0.1:0"
	cfg.Cluster.Listen = "127.0.0.1:0"
	cfg.API.Listen = "127.0.0.1:0"
	if join != "" {
		cfg.Gossip.Join = []string{join}
	}
	if i == 0 {
		cfg.Node, cfg.Role = "controller", "controller"
		cfg.Mirror.Source = filepath.Join(root, "source")
		// deploy -run as the developer: the agent runs as them, not root.
		if u, err := user.Current(); err == nil {
			cfg.Deploy.RunAs = u.Username
		}
		if portFree("127.0.0.1:7948") {
			cfg.API.Listen = "127.0.0.1:7948"
		}
	} else {
		cfg.Node, cfg.Role = fmt.Sprintf("web-%d", i), "web"
		cfg.Mirror.Target = filepath.Join(root, cfg.Node, "www", "moodle")
	}
	cfg.DataDir = filepath.Join(root, cfg.Node, "data")
	return cfg
}

func portFree(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// devSecret reads a secret file, creating it with gen when absent.
func devSecret(path string, gen func() (string, error)) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	s, err := gen()
	if err != nil {
		return "", err
	}
	return s, os.WriteFile(path, []byte(s+"\n"), 0o600)
}

func (cl *devCluster) close() error {
	var first error
	for i := len(cl.agents) - 1; i >= 0; i-- {
		if err := cl.agents[i].Close(); err != nil && first == nil {
			first = err
		}
	}
	for _, b := range cl.backends {
		b.Close()
	}
	return first
}

// startBackend serves a web node's docroot (the symlink the agent switches)
// on a free loopback port: the demo web server behind the node's edge.
func (cl *devCluster) startBackend(docroot string) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("demo backend: %w", err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(docroot)), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	cl.backends = append(cl.backends, srv)
	return "http://" + ln.Addr().String(), nil
}

func (cl *devCluster) printIntro(out io.Writer) {
	ctl := cl.agents[0]
	fmt.Fprintf(out, "\nnodeagent dev cluster: 1 controller + %d web nodes on 127.0.0.1\n\n", len(cl.agents)-1)
	fmt.Fprintf(out, "  %-11s local API http://%s  cluster API https://%s  gossip %s\n", "controller", ctl.LocalAddr(), ctl.ClusterAddr(), ctl.GossipAddr())
	fmt.Fprintf(out, "  %-11s source %s\n", "", cl.cfgs[0].Mirror.Source)
	for i, a := range cl.agents[1:] {
		cfg := cl.cfgs[i+1]
		fmt.Fprintf(out, "  %-11s local API http://%s  cluster API https://%s  target %s\n", cfg.Node, a.LocalAddr(), a.ClusterAddr(), cfg.Mirror.Target)
		fmt.Fprintf(out, "  %-11s edge https://%s/ (self-signed) -> demo backend %s\n", "", a.EdgeAddr(), cfg.Edge.Backend)
	}
	fmt.Fprintf(out, "\nStatus page: http://%s/ui/ (read-only without the token; sign in with it to act)\n", ctl.LocalAddr())
	fmt.Fprintf(out, "\nIn another shell:\n\n")
	fmt.Fprintf(out, "  export NODEAGENT_ADDR=http://%s NODEAGENT_TOKEN=$(cat %s)\n", ctl.LocalAddr(), filepath.Join(cl.root, "api.token"))
	fmt.Fprintf(out, "  go run ./cmd/nodeagent status\n")
	fmt.Fprintf(out, "  echo '<?php // changed' >> %s\n", filepath.Join(cl.cfgs[0].Mirror.Source, "index.php"))
	fmt.Fprintf(out, "  go run ./cmd/nodeagent publish -m 'my change'\n")
	fmt.Fprintf(out, "  cat %s\n", filepath.Join(cl.cfgs[1].Mirror.Target, "index.php"))
	fmt.Fprintf(out, "  curl -s http://%s/readyz\n", cl.agents[1].LocalAddr())
	fmt.Fprintf(out, "  curl -sk https://%s/index.php\n", cl.agents[1].EdgeAddr())
	fmt.Fprintf(out, "  NODEAGENT_ADDR=http://%s go run ./cmd/nodeagent certs\n", cl.agents[1].LocalAddr())
	fmt.Fprintf(out, "  curl -s -H \"Authorization: Bearer $NODEAGENT_TOKEN\" $NODEAGENT_ADDR/v1/members\n")
	fmt.Fprintf(out, "\nCtrl-C stops the cluster.\n")
}

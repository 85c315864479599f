package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// anchorCommand makes this program a minimal HTTP server: the anchor the
// /readyz latencies are compared with (same generator, same machine, a
// handler that does nothing but answer).
const anchorCommand = "serve-anchor"

// serveAnchor serves a fixed health document on a free loopback port,
// printing its address on the first line of out, until ctx ends.
func serveAnchor(ctx context.Context, out io.Writer) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("anchor listen: %w", err)
	}
	body := []byte(`{"status":"pass"}` + "\n")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/health+json")
		w.Write(body)
	}), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintln(out, ln.Addr().String())
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// anchorProc is the anchor server running as a child process.
type anchorProc struct {
	cmd  *exec.Cmd
	addr string
}

func startAnchor() (*anchorProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("anchor: %w", err)
	}
	cmd := exec.Command(self, anchorCommand)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("anchor: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("anchor: %w", err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("anchor address: %w", err)
	}
	return &anchorProc{cmd: cmd, addr: strings.TrimSpace(line)}, nil
}

func (a *anchorProc) stop() {
	a.cmd.Process.Signal(syscall.SIGTERM)
	a.cmd.Wait()
}

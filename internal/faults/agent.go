package faults

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// agent is one nodeagent process of the cluster, started again after
// every stop.
type agent struct {
	name string

	mu     sync.Mutex
	pid    int
	exited chan struct{} // closed when the current process is gone
	state  *os.ProcessState
}

// StartAgent starts node's agent; its output goes to <dir>/<node>.log.
func (c *Cluster) StartAgent(node string) error {
	a := c.agents[node]
	if a == nil {
		a = &agent{name: node}
		c.agents[node] = a
	}
	if a.Running() {
		return fmt.Errorf("start %s: already running", node)
	}
	logf, err := os.OpenFile(filepath.Join(c.opts.Dir, node+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== faults: start at %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := c.lab.Command(node, c.opts.Binary, "run", "-config", c.configPath(node))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", node, err)
	}
	exited := make(chan struct{})
	a.mu.Lock()
	a.pid, a.exited, a.state = cmd.Process.Pid, exited, nil
	a.mu.Unlock()
	go func() {
		cmd.Wait()
		a.mu.Lock()
		a.state = cmd.ProcessState
		a.mu.Unlock()
		close(exited)
	}()
	return nil
}

// Running reports whether the agent's process is alive.
func (a *agent) Running() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.exited == nil {
		return false
	}
	select {
	case <-a.exited:
		return false
	default:
		return true
	}
}

// Running reports whether node's agent process is alive.
func (c *Cluster) Running(node string) bool {
	a := c.agents[node]
	return a != nil && a.Running()
}

// Signal sends sig to node's agent; it does not wait.
func (c *Cluster) Signal(node string, sig syscall.Signal) error {
	a := c.agents[node]
	if a == nil || !a.Running() {
		return fmt.Errorf("signal %s: not running", node)
	}
	a.mu.Lock()
	pid := a.pid
	a.mu.Unlock()
	return syscall.Kill(pid, sig)
}

// WaitExit waits until node's agent has exited, at most timeout.
func (c *Cluster) WaitExit(node string, timeout time.Duration) error {
	a := c.agents[node]
	if a == nil {
		return nil
	}
	a.mu.Lock()
	exited := a.exited
	a.mu.Unlock()
	if exited == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s did not exit within %s", node, timeout)
	}
}

// Stop stops node's agent with sig (SIGKILL, or SIGINT for the graceful
// stop of the unit's KillSignal) and waits until it is gone; a graceful
// stop that takes longer than 20 s is an error (systemd would kill it).
func (c *Cluster) Stop(node string, sig syscall.Signal) error {
	if err := c.Signal(node, sig); err != nil {
		return err
	}
	if err := c.WaitExit(node, 20*time.Second); err != nil {
		c.Signal(node, syscall.SIGKILL)
		c.WaitExit(node, 10*time.Second)
		return err
	}
	return nil
}

// stop ends the process for Close: SIGTERM, then SIGKILL after timeout.
func (a *agent) stop(timeout time.Duration) error {
	if !a.Running() {
		return nil
	}
	a.mu.Lock()
	pid, exited := a.pid, a.exited
	a.mu.Unlock()
	syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
		syscall.Kill(pid, syscall.SIGKILL)
		<-exited
		return fmt.Errorf("%s did not stop within %s after SIGTERM", a.name, timeout)
	}
}

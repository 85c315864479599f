// Package benchenv holds what the bench commands share: the description
// of the machine for the reports they write into docs/benchmarks.md, and
// the plumbing of agent processes (build, ports, secrets, CPU time).
package benchenv

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPUModel is the first "model name" of /proc/cpuinfo, or "?".
func CPUModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.SplitSeq(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return "?"
}

// LoadAverage is the 1-minute load average, or "?".
func LoadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

// CommandOutput is the standard output of a command, or "?" when it fails.
func CommandOutput(ctx context.Context, name string, args ...string) string {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return "?"
	}
	return string(out)
}

// FirstLine is the first line of s with its runs of spaces folded.
func FirstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.Join(strings.Fields(line), " ")
}

// BuildAgent builds nodeagent into dir and returns the binary's path.
func BuildAgent(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "nodeagent")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/nodeagent/nodeagent/cmd/nodeagent")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build nodeagent: %w\n%s", err, out)
	}
	return bin, nil
}

// clockTicks is USER_HZ, the unit of CPU times in /proc/PID/stat.
const clockTicks = 100

// CPUTime is the user+system CPU time process pid used so far.
func CPUTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time of %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces: count from after it.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu time of %d: short stat line", pid)
	}
	var ticks int64
	for _, v := range f[11:13] { // utime, stime: fields 14 and 15
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu time of %d: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// FreePorts returns n distinct ports free for both TCP and UDP on
// 127.0.0.1 (an agent binds its gossip port for both).
func FreePorts(n int) ([]int, error) {
	var ports []int
	var held []io.Closer
	defer func() {
		for _, h := range held {
			h.Close()
		}
	}()
	for attempt := 0; len(ports) < n && attempt < 100; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		held = append(held, ln)
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		pc.Close()
		ports = append(ports, port)
	}
	if len(ports) < n {
		return nil, errors.New("free port: none found")
	}
	return ports, nil
}

// WriteSecrets writes a gossip key of 32 times the byte keyByte and the
// API token into dir (0600) and returns their paths.
func WriteSecrets(dir string, keyByte byte, token string) (keyFile, tokenFile string, err error) {
	keyFile, tokenFile = filepath.Join(dir, "gossip.key"), filepath.Join(dir, "api.token")
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{keyByte}, 32)) + "\n"
	if err := os.WriteFile(keyFile, []byte(key), 0o600); err != nil {
		return "", "", fmt.Errorf("gossip key: %w", err)
	}
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("api token: %w", err)
	}
	return keyFile, tokenFile, nil
}

// RunAs is the deploy.run_as of a benchmark's controller: the user the
// benchmark runs as, which the agent can always run commands as.
func RunAs() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "root"
}

// AppendFile appends text to the file name (created 0644 if missing): a
// report added to docs/benchmarks.md.
func AppendFile(name, text string) error {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// RemoveTree removes dir even where releases made directories read-only.
func RemoveTree(dir string) {
	if os.RemoveAll(dir) == nil {
		return
	}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	os.RemoveAll(dir)
}

// Poll calls f every interval until it returns nil, ctx ends or timeout
// passes; it then returns f's last error.
func Poll(ctx context.Context, timeout, interval time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// Stop ends a process the benchmark started: SIGTERM (an agent leaves the
// cluster gracefully), SIGKILL after 10 s.
func Stop(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// WriteReport prints the markdown section md and, when out is set, appends
// it to that file as well.
func WriteReport(stdout io.Writer, out, md string) error {
	fmt.Fprint(stdout, md)
	if out == "" {
		return nil
	}
	if err := AppendFile(out, md); err != nil {
		return fmt.Errorf("-out: %w", err)
	}
	return nil
}

// Workspace makes a temporary directory under work for a benchmark run and
// builds nodeagent into it unless bin names a binary already; remove
// deletes the directory (read-only release directories included).
func Workspace(ctx context.Context, work, prefix, bin string, log *slog.Logger) (root, agent string, remove func(), err error) {
	if root, err = os.MkdirTemp(work, prefix); err != nil {
		return "", "", nil, fmt.Errorf("work dir: %w", err)
	}
	remove = func() {
		log.Info("removing the temporary trees", "dir", root)
		RemoveTree(root)
	}
	if bin == "" {
		if bin, err = BuildAgent(ctx, root); err != nil {
			remove()
			return "", "", nil, err
		}
	}
	return root, bin, remove, nil
}

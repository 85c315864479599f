package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// memory returns a field of /proc/PID/status (VmRSS, VmHWM, …) in bytes.
func memory(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read memory of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s of %d: %q", field, pid, rest)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("%s of %d: no such field", field, pid)
}

// timing is the cost of a command: wall time, and the CPU time (user +
// system) of it and its descendants.
type timing struct{ wall, cpu time.Duration }

// timeShell runs script with sh in dir and returns what it cost. The script
// runs in its own process group, killed whole when ctx ends.
func timeShell(ctx context.Context, dir, script string) (timing, error) {
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t := timing{wall: time.Since(start)}
	if err != nil {
		return t, fmt.Errorf("%s: %w\n%s", script, err, out)
	}
	t.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return t, nil
}

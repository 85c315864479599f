package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/bench/internal/benchenv"
)

// machine describes where the benchmark ran.
type machine struct {
	date      string
	nproc     int
	cpu       string
	goVersion string
	agent     string
	loadStart string
	loadEnd   string
}

func describeMachine(ctx context.Context, bin string) machine {
	return machine{
		date:      time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		nproc:     runtime.NumCPU(),
		cpu:       benchenv.CPUModel(),
		goVersion: runtime.Version(),
		agent:     firstLine(commandOutput(ctx, bin, "version")),
		loadStart: benchenv.LoadAverage(),
	}
}

func (m machine) markdown(command string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "- machine: %d CPUs (%s), %s, load average %s at start, %s at the end (the cores are shared)\n",
		m.nproc, m.cpu, m.goVersion, m.loadStart, m.loadEnd)
	fmt.Fprintf(&b, "- agent: %s; date %s\n- command: `%s`\n\n", m.agent, m.date, command)
	return b.String()
}

func commandOutput(ctx context.Context, name string, args ...string) string {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return "?"
	}
	return string(out)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// buildAgent builds cmd/nodeagent into dir.
func buildAgent(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "nodeagent")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/nodeagent")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/nodeagent (run from the module root): %v\n%s", err, out)
	}
	return bin, nil
}

// clockTicks is USER_HZ, the unit of CPU times in /proc/PID/stat.
const clockTicks = 100

// cpuTime is the user+system CPU time a process used so far.
func cpuTime(pid int) (time.Duration, error) {
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

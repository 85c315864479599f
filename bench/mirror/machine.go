package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/bench/internal/benchenv"
)

// machine describes where the benchmark ran.
type machine struct {
	date      string
	nproc     int
	cpu       string
	memory    string
	kernel    string
	fs        string // filesystem of the work dir
	goVersion string
	rsync     string
	loadStart string
}

func describeMachine(ctx context.Context, workDir string) machine {
	return machine{
		date:      time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		nproc:     runtime.NumCPU(),
		cpu:       procField("/proc/cpuinfo", "model name"),
		memory:    memTotal(),
		kernel:    strings.TrimSpace(readText("/proc/sys/kernel/osrelease")),
		fs:        filesystem(ctx, workDir),
		goVersion: fmt.Sprintf("%s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH),
		rsync:     benchenv.FirstLine(benchenv.CommandOutput(ctx, "rsync", "--version")),
		loadStart: benchenv.LoadAverage(),
	}
}

// procField returns the value of the first "key: value" line of a /proc
// file, or "?".
func procField(path, key string) string {
	for _, line := range strings.Split(readText(path), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return "?"
}

// memTotal returns the machine's memory in GiB, or "?".
func memTotal() string {
	var kb int64
	if _, err := fmt.Sscanf(procField("/proc/meminfo", "MemTotal"), "%d kB", &kb); err != nil {
		return "?"
	}
	return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
}

// filesystem returns the type and device of the filesystem holding dir.
func filesystem(ctx context.Context, dir string) string {
	lines := strings.Split(strings.TrimSpace(benchenv.CommandOutput(ctx, "df", "--output=fstype,source", dir)), "\n")
	if len(lines) < 2 {
		return "?"
	}
	return strings.Join(strings.Fields(lines[len(lines)-1]), " on ")
}

func readText(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	return string(data)
}

// checkout names the git commit of the working directory, and says whether
// the checkout holds uncommitted changes.
func checkout(ctx context.Context) string {
	head := strings.TrimSpace(benchenv.CommandOutput(ctx, "git", "rev-parse", "--short", "HEAD"))
	if head == "?" || head == "" {
		return "not a git checkout"
	}
	if strings.TrimSpace(benchenv.CommandOutput(ctx, "git", "status", "--porcelain")) != "" {
		return "checkout " + head + " with uncommitted changes"
	}
	return "checkout " + head
}

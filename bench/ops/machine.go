package main

import (
	"context"
	"fmt"
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
		agent:     benchenv.FirstLine(benchenv.CommandOutput(ctx, bin, "version")),
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

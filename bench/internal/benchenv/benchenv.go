// Package benchenv describes the machine a benchmark runs on, for the
// reports the bench commands write into docs/benchmarks.md.
package benchenv

import (
	"os"
	"strings"
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

package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"
)

// phaseOrder is the order of a web node's sync phases (mirror.Phase*).
var phaseOrder = []string{"manifest", "link", "fetch", "durable", "switch", "after_switch", "gc", "spare"}

// phaseTimes holds, per sync phase, the seconds each sync spent in it.
type phaseTimes map[string]*samples

var phaseLine = regexp.MustCompile(`msg="sync phase done" .*phase=(\S+) duration=(\S+)`)

// addLog adds the phase durations a web node logged after offset, as one
// sync.
func (pt *phaseTimes) addLog(p *agentProc, offset int64) error {
	data, err := os.ReadFile(p.logFile)
	if err != nil {
		return fmt.Errorf("log of %s: %w", p.name, err)
	}
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	sums := map[string]time.Duration{}
	for _, m := range phaseLine.FindAllStringSubmatch(string(data[offset:]), -1) {
		d, err := time.ParseDuration(m[2])
		if err != nil {
			return fmt.Errorf("log of %s: phase %s: %w", p.name, m[1], err)
		}
		sums[m[1]] += d
	}
	if *pt == nil {
		*pt = phaseTimes{}
	}
	for phase, d := range sums {
		if (*pt)[phase] == nil {
			(*pt)[phase] = &samples{}
		}
		(*pt)[phase].addDuration(d)
	}
	return nil
}

// String lists the median of each phase in sync order.
func (pt phaseTimes) String() string {
	var parts []string
	for _, phase := range phaseOrder {
		if s := pt[phase]; s != nil {
			parts = append(parts, phase+" "+seconds(s.median()))
		}
	}
	if len(parts) == 0 {
		return "not logged"
	}
	return strings.Join(parts, ", ")
}

package faults

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"time"
)

// Kind is a kind of fault.
type Kind string

// The faults the harness injects.
const (
	Restart         Kind = "restart"             // Signal to Nodes, Mode alone, together or rolling
	Partition       Kind = "partition"           // Nodes[0] cut from everyone for For
	OneWay          Kind = "one-way partition"   // Nodes[0] drops what Nodes[1] sends, for For
	LossDelay       Kind = "loss and delay"      // 10% loss and 100 ms delay on what Nodes send, for For
	PublishKill     Kind = "publish killed"      // the controller killed during a publish
	DiskFull        Kind = "disk full"           // Nodes[0]'s data_dir full during a sync, for For
	DeployPartition Kind = "deploy in partition" // a deploy while Nodes[0] is cut off, for For
)

// Restart modes.
const (
	Alone    = "alone"
	Together = "together"
	Rolling  = "rolling"
)

// Scenario is one fault with its parameters; Seed drives its smaller
// choices (pauses, the moment of a kill), so a scenario replays the same.
type Scenario struct {
	Kind   Kind
	Nodes  []string
	Signal syscall.Signal
	Mode   string
	For    time.Duration
	Seed   uint64
}

func (s Scenario) String() string {
	var b strings.Builder
	b.WriteString(string(s.Kind))
	if s.Kind == Restart {
		sig := "SIGINT"
		if s.Signal == syscall.SIGKILL {
			sig = "kill -9"
		}
		fmt.Fprintf(&b, " (%s, %s)", sig, s.Mode)
	}
	fmt.Fprintf(&b, " of %s", strings.Join(s.Nodes, ", "))
	if s.For > 0 {
		fmt.Fprintf(&b, " for %s", s.For)
	}
	return b.String()
}

func (s Scenario) rand() *rand.Rand { return rand.New(rand.NewPCG(s.Seed, 0xfa17)) }

// Partition lengths: below the LAN suspicion timeout (no one is declared
// dead), 30 s, and above its maximum (4 s to 24 s at 5 members).
var partitionLengths = []time.Duration{5 * time.Second, 30 * time.Second, 45 * time.Second}

// RandomScenario draws a scenario from seed for a cluster of webs (whose
// smallDisk node, if any, can fill up).
func RandomScenario(seed uint64, webs []string, smallDisk string) Scenario {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	s := Scenario{Seed: r.Uint64()}
	web := webs[r.IntN(len(webs))]
	all := append([]string{Controller}, webs...)
	kinds := []Kind{Restart, Restart, Restart, Partition, Partition, OneWay, LossDelay, PublishKill, DeployPartition}
	if smallDisk != "" {
		kinds = append(kinds, DiskFull)
	}
	s.Kind = kinds[r.IntN(len(kinds))]
	switch s.Kind {
	case Restart:
		s.Signal = []syscall.Signal{syscall.SIGKILL, syscall.SIGINT}[r.IntN(2)]
		s.Mode = []string{Alone, Alone, Together, Rolling}[r.IntN(4)]
		switch {
		case s.Mode == Alone && r.IntN(2) == 0:
			s.Nodes = []string{Controller}
		case s.Mode == Alone:
			s.Nodes = []string{web}
		case r.IntN(2) == 0:
			s.Nodes = all
		default:
			s.Nodes = append([]string(nil), webs...)
		}
		r.Shuffle(len(s.Nodes), func(i, j int) { s.Nodes[i], s.Nodes[j] = s.Nodes[j], s.Nodes[i] })
	case Partition:
		s.Nodes = []string{[]string{Controller, web}[r.IntN(2)]}
		s.For = partitionLengths[r.IntN(len(partitionLengths))]
	case OneWay:
		if r.IntN(2) == 0 {
			s.Nodes = []string{web, Controller}
		} else {
			s.Nodes = []string{Controller, web}
		}
		s.For = []time.Duration{10 * time.Second, 30 * time.Second}[r.IntN(2)]
	case LossDelay:
		s.Nodes = [][]string{all, {web}, {Controller}}[r.IntN(3)]
		s.For = 20 * time.Second
	case PublishKill:
		s.Nodes = []string{Controller}
	case DiskFull:
		s.Nodes = []string{smallDisk}
		s.For = 5 * time.Second
	case DeployPartition:
		s.Nodes = []string{web}
		s.For = 30 * time.Second
	}
	return s
}

// FixedScenarios is the short set CI runs: each fault once (partitions of
// the controller for 5 s, about the suspicion timeout, and 30 s, of a web
// node for 45 s, beyond its maximum), with webs[0] and webs[1] as the web
// nodes hit, and smallDisk for the full disk.
func FixedScenarios(webs []string, smallDisk string) []Scenario {
	all := append([]string{Controller}, webs...)
	return []Scenario{
		{Kind: Restart, Signal: syscall.SIGKILL, Mode: Alone, Nodes: []string{webs[0]}, Seed: 1},
		{Kind: Restart, Signal: syscall.SIGINT, Mode: Alone, Nodes: []string{Controller}, Seed: 2},
		{Kind: Restart, Signal: syscall.SIGKILL, Mode: Together, Nodes: all, Seed: 3},
		{Kind: Restart, Signal: syscall.SIGINT, Mode: Rolling, Nodes: all, Seed: 4},
		{Kind: Partition, Nodes: []string{Controller}, For: 5 * time.Second, Seed: 5},
		{Kind: Partition, Nodes: []string{Controller}, For: 30 * time.Second, Seed: 12},
		{Kind: Partition, Nodes: []string{webs[1]}, For: 45 * time.Second, Seed: 6},
		{Kind: OneWay, Nodes: []string{webs[0], Controller}, For: 10 * time.Second, Seed: 7},
		{Kind: LossDelay, Nodes: all, For: 20 * time.Second, Seed: 8},
		{Kind: PublishKill, Nodes: []string{Controller}, Seed: 9},
		{Kind: DiskFull, Nodes: []string{smallDisk}, For: 5 * time.Second, Seed: 10},
		{Kind: DeployPartition, Nodes: []string{webs[1]}, For: 15 * time.Second, Seed: 11},
	}
}

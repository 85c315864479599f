package faults_test

import (
	"reflect"
	"testing"

	"github.com/nodeagent/nodeagent/internal/faults"
)

// TestRandomScenarioReplays: a round's seed alone decides its fault and
// parameters, so the seed a failing round prints replays it; and the
// seeds of a run reach every kind of fault.
func TestRandomScenarioReplays(t *testing.T) {
	webs := []string{"web-1", "web-2", "web-3", "web-4"}
	kinds := map[faults.Kind]int{}
	for seed := uint64(1); seed <= 300; seed++ {
		a := faults.RandomScenario(seed, webs, "web-4")
		b := faults.RandomScenario(seed, webs, "web-4")
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("seed %d: %v, then %v", seed, a, b)
		}
		if len(a.Nodes) == 0 {
			t.Fatalf("seed %d: %v hits no node", seed, a)
		}
		kinds[a.Kind]++
	}
	for _, k := range []faults.Kind{faults.Restart, faults.Partition, faults.OneWay, faults.LossDelay,
		faults.PublishKill, faults.DiskFull, faults.DeployPartition} {
		if kinds[k] == 0 {
			t.Errorf("no %s in 300 seeds: %v", k, kinds)
		}
	}
	if faults.RandomScenario(1, webs, "web-4").Seed == faults.RandomScenario(2, webs, "web-4").Seed {
		t.Error("two seeds give one scenario seed")
	}
}

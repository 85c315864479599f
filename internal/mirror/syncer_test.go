package mirror_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/mirror"
)

// gatedSource holds every Revision call until gate is closed, telling
// entered which id it was asked for.
type gatedSource struct {
	mirror.Source
	entered chan string
	gate    chan struct{}
}

func (g *gatedSource) Revision(ctx context.Context, id string) (mirror.Revision, error) {
	g.entered <- id
	select {
	case <-g.gate:
	case <-ctx.Done():
		return mirror.Revision{}, ctx.Err()
	}
	return g.Source.Revision(ctx, id)
}

type syncerHarness struct {
	ctl     *fakeController
	node    *testNode
	syncer  *mirror.Syncer
	mu      sync.Mutex
	applied []string
	source  func(context.Context) (mirror.Source, error)
}

func newSyncerHarness(t *testing.T, cfg mirror.ReleasesConfig, source func(*fakeController) func(context.Context) (mirror.Source, error)) *syncerHarness {
	t.Helper()
	h := &syncerHarness{ctl: newFakeController(t), node: mustOpenReleases(t, cfg)}
	h.syncer = mirror.NewSyncer(mirror.SyncerConfig{
		Releases: h.node.rels,
		Source:   source(h.ctl),
		OnApplied: func(rev mirror.Revision) {
			h.mu.Lock()
			h.applied = append(h.applied, rev.ID)
			h.mu.Unlock()
		},
		RetryMin: time.Millisecond,
		RetryMax: 5 * time.Millisecond,
	})
	if err := h.syncer.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.syncer.Close() })
	return h
}

func plainSource(ctl *fakeController) func(context.Context) (mirror.Source, error) {
	return func(context.Context) (mirror.Source, error) { return ctl.client(), nil }
}

func (h *syncerHarness) appliedIDs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.applied...)
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (h *syncerHarness) waitApplied(t *testing.T, rev mirror.Revision) {
	t.Helper()
	waitFor(t, "revision "+rev.ID+" applied", func() bool {
		ids := h.appliedIDs()
		return len(ids) > 0 && ids[len(ids)-1] == rev.ID
	})
	if cur, _ := h.node.rels.Current(); cur.ID != rev.ID {
		t.Fatalf("current = %s; want %s", cur.ID, rev.ID)
	}
}

func TestSyncerAppliesEachTarget(t *testing.T) {
	h := newSyncerHarness(t, mirror.ReleasesConfig{Keep: 3}, plainSource)
	v1, v2 := siteTree("v1"), siteTree("v2")
	rev1, rev2 := h.ctl.publish(v1), h.ctl.publish(v2)

	h.syncer.SetTarget(mirror.Revision{Seq: rev1.Seq, ID: rev1.ID})
	h.waitApplied(t, rev1)
	checkTree(t, h.node.target, v1)

	h.syncer.SetTarget(rev2)
	h.waitApplied(t, rev2)
	checkTree(t, h.node.target, v2)

	h.syncer.SetTarget(rev1) // rollback
	h.waitApplied(t, rev1)
	checkTree(t, h.node.target, v1)
	if err, _ := h.syncer.LastError(); err != nil {
		t.Errorf("last error = %v", err)
	}
}

func TestSyncerRetriesUntilTheSourceWorks(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	var calls atomic.Int64
	h := newSyncerHarness(t, mirror.ReleasesConfig{}, func(ctl *fakeController) func(context.Context) (mirror.Source, error) {
		return func(context.Context) (mirror.Source, error) {
			calls.Add(1)
			if broken.Load() {
				return nil, errors.New("controller unreachable")
			}
			return ctl.client(), nil
		}
	})
	rev := h.ctl.publish(siteTree("v1"))
	h.syncer.SetTarget(rev)
	waitFor(t, "two failed attempts", func() bool { return calls.Load() >= 2 })
	err, at := h.syncer.LastError()
	if err == nil || at.IsZero() {
		t.Fatalf("last error = %v at %v; want the failure", err, at)
	}
	broken.Store(false)
	h.waitApplied(t, rev)
	if err, _ := h.syncer.LastError(); err != nil {
		t.Errorf("last error after success = %v", err)
	}
}

func TestSyncerGoesToTheNewestTargetAfterAnApply(t *testing.T) {
	gate := &gatedSource{entered: make(chan string, 10), gate: make(chan struct{})}
	h := newSyncerHarness(t, mirror.ReleasesConfig{Keep: 3}, func(ctl *fakeController) func(context.Context) (mirror.Source, error) {
		gate.Source = ctl.client()
		return func(context.Context) (mirror.Source, error) { return gate, nil }
	})
	rev1 := h.ctl.publish(siteTree("v1"))
	rev2 := h.ctl.publish(siteTree("v2"))
	rev3 := h.ctl.publish(siteTree("v3"))

	h.syncer.SetTarget(rev1)
	if id := <-gate.entered; id != rev1.ID {
		t.Fatalf("first apply of %s", id)
	}
	h.syncer.SetTarget(rev2)
	h.syncer.SetTarget(rev3)
	close(gate.gate)
	h.waitApplied(t, rev3)

	if ids := h.appliedIDs(); len(ids) != 2 || ids[0] != rev1.ID {
		t.Errorf("applied %v; want %s then %s", ids, rev1.ID, rev3.ID)
	}
	if id := <-gate.entered; id != rev3.ID || len(gate.entered) != 0 {
		t.Errorf("second apply of %s (%d more); want %s only", id, len(gate.entered), rev3.ID)
	}
}

func TestSyncerReportsAfterSwitchFailure(t *testing.T) {
	h := newSyncerHarness(t, mirror.ReleasesConfig{AfterSwitch: []string{"false"}}, plainSource)
	rev := h.ctl.publish(siteTree("v1"))
	h.syncer.SetTarget(rev)
	h.waitApplied(t, rev)
	if err, _ := h.syncer.LastError(); !errors.Is(err, mirror.ErrAfterSwitch) {
		t.Errorf("last error = %v; want ErrAfterSwitch", err)
	}
}

func TestSyncerCloseInterruptsAnApply(t *testing.T) {
	gate := &gatedSource{entered: make(chan string, 10), gate: make(chan struct{})}
	h := newSyncerHarness(t, mirror.ReleasesConfig{}, func(ctl *fakeController) func(context.Context) (mirror.Source, error) {
		gate.Source = ctl.client()
		return func(context.Context) (mirror.Source, error) { return gate, nil }
	})
	h.syncer.SetTarget(h.ctl.publish(siteTree("v1")))
	<-gate.entered
	if err := h.syncer.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.syncer.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.node.rels.Current(); ok {
		t.Error("an interrupted apply switched")
	}
	checkNoTemps(t, h.node)
}

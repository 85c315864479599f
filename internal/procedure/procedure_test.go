package procedure_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/errs"
	"github.com/nodeagent/nodeagent/internal/procedure"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

func waitDone[T any](t *testing.T, r *procedure.Runner[T], id string) procedure.Record[T] {
	t.Helper()
	var rec procedure.Record[T]
	testutil.Eventually(t, 5*time.Second, func() error {
		var err error
		if rec, err = r.Get(id); err != nil {
			return err
		}
		if rec.Status == procedure.Running {
			return fmt.Errorf("still running")
		}
		return nil
	})
	return rec
}

func TestStepsRunInOrderAndStopAtFailure(t *testing.T) {
	r := procedure.NewRunner[string](procedure.Config{Kind: "deploy"})
	var ran []string
	step := func(name string, err error) procedure.Step[string] {
		return procedure.Step[string]{Name: name, Do: func(ctx context.Context, run *procedure.Run[string]) (string, error) {
			ran = append(ran, name)
			run.Update(func(d *string) { *d += name })
			return "did " + name, err
		}}
	}
	rec, err := r.Start(context.Background(), "", []procedure.Step[string]{
		step("a", nil), step("b", errors.New("boom")), step("c", nil),
	}, func(procedure.Record[string]) string { return " (maintenance stays on)" })
	if err != nil || rec.Status != procedure.Running || len(rec.Steps) != 3 || rec.Steps[0].Status != procedure.Pending {
		t.Fatalf("start: %+v %v", rec, err)
	}
	rec = waitDone(t, r, rec.ID)
	if fmt.Sprint(ran) != "[a b]" || rec.Data != "ab" {
		t.Fatalf("ran %v, data %q", ran, rec.Data)
	}
	if rec.Status != procedure.Failed || rec.Error != "boom (maintenance stays on)" || rec.Finished == nil {
		t.Fatalf("record %+v", rec)
	}
	want := []string{procedure.OK, procedure.Failed, procedure.Pending}
	for i, s := range rec.Steps {
		if s.Status != want[i] {
			t.Errorf("step %s: %s, want %s", s.Name, s.Status, want[i])
		}
	}
	if rec.Steps[0].Detail != "did a" || rec.Steps[1].Detail != "boom" || rec.Steps[0].Started == nil || rec.Steps[2].Started != nil {
		t.Errorf("steps %+v", rec.Steps)
	}
	if _, err := r.Get("nope"); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
}

// TestGateOneAtATime: runs of two runners sharing a gate exclude each
// other; the gate opens when the run ends.
func TestGateOneAtATime(t *testing.T) {
	gate := &procedure.Gate{}
	deploys := procedure.NewRunner[int](procedure.Config{Kind: "deploy", Gate: gate})
	restores := procedure.NewRunner[int](procedure.Config{Kind: "restore", Gate: gate})
	release := make(chan struct{})
	block := procedure.Simple[int]("block", func(ctx context.Context) (string, error) { <-release; return "", nil })
	rec, err := deploys.Start(context.Background(), 0, []procedure.Step[int]{block}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := restores.Start(context.Background(), 0, nil, nil); !errors.Is(err, errs.ErrConflict) {
		t.Fatalf("a restore during a deploy: %v", err)
	}
	if _, err := deploys.Start(context.Background(), 0, nil, nil); err == nil || err.Error() != "a deploy "+rec.ID+" is running" {
		t.Fatalf("a second deploy: %v", err)
	}
	close(release)
	waitDone(t, deploys, rec.ID)
	second, err := restores.Start(context.Background(), 0, nil, nil)
	if err != nil {
		t.Fatalf("after the deploy: %v", err)
	}
	if rec := waitDone(t, restores, second.ID); rec.Status != procedure.Succeeded {
		t.Fatalf("empty run: %+v", rec)
	}
}

func TestHistoryBounded(t *testing.T) {
	r := procedure.NewRunner[int](procedure.Config{Kind: "deploy", Keep: 2})
	var ids []string
	for i := 0; i < 3; i++ {
		rec, err := r.Start(context.Background(), i, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rec.ID)
	}
	r.Wait()
	if _, err := r.Get(ids[0]); err == nil {
		t.Error("the oldest run is still kept")
	}
	if rec, err := r.Get(ids[2]); err != nil || rec.Data != 2 {
		t.Errorf("newest: %+v %v", rec, err)
	}
	if l := r.List(); len(l) != 2 || l[0].ID != ids[1] || l[1].ID != ids[2] {
		t.Errorf("list: %+v", l)
	}
}

// TestCancel: a run ends when its context does, at the step that sees it.
func TestCancel(t *testing.T) {
	r := procedure.NewRunner[int](procedure.Config{Kind: "deploy"})
	ctx, cancel := context.WithCancel(context.Background())
	wait := procedure.Simple[int]("wait", func(ctx context.Context) (string, error) { <-ctx.Done(); return "", ctx.Err() })
	rec, _ := r.Start(ctx, 0, []procedure.Step[int]{wait}, nil)
	cancel()
	r.Wait()
	if rec, _ = r.Get(rec.ID); rec.Status != procedure.Failed || rec.Error != context.Canceled.Error() {
		t.Fatalf("%+v", rec)
	}
}

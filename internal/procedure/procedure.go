// Package procedure runs the agent's multi-step operations — a deploy, a
// database move — as lists of named steps: one at a time per gate, in the
// background, each step timed and recorded, stopping at the first failure,
// with a bounded history that the API serves while they run.
//
// It knows nothing of what the steps do: the agent builds them.
package procedure

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync"
	"time"

	"github.com/nodeagent/nodeagent/internal/errs"
)

// States of a step and of a whole run.
const (
	Pending   = "pending"   // step not started
	Running   = "running"   // step or run in progress
	OK        = "ok"        // step done
	Failed    = "failed"    // step or run failed
	Succeeded = "succeeded" // run done, every step ok
)

// StepRecord is one step as the API shows it.
type StepRecord struct {
	Name     string     `json:"name"`
	Status   string     `json:"status"`
	Started  *time.Time `json:"started,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
	Seconds  float64    `json:"seconds"`
	Detail   string     `json:"detail,omitempty"`
}

// Record is one run: its steps, and Data, what its steps record for the
// caller (e.g. the revision a deploy published).
type Record[T any] struct {
	ID       string
	Status   string
	Started  time.Time
	Finished *time.Time
	Seconds  float64
	Steps    []StepRecord
	Error    string
	Data     T
}

// Step is one named action. Do returns a detail line for the record, or
// the error that stops the run.
type Step[T any] struct {
	Name string
	Do   func(ctx context.Context, run *Run[T]) (detail string, err error)
}

// Simple is a step that needs nothing of the run.
func Simple[T any](name string, do func(ctx context.Context) (string, error)) Step[T] {
	return Step[T]{Name: name, Do: func(ctx context.Context, _ *Run[T]) (string, error) { return do(ctx) }}
}

// Gate lets one run at a time through every runner that shares it.
type Gate struct {
	mu     sync.Mutex
	holder string // "deploy <id>"
}

func (g *Gate) enter(holder string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.holder != "" {
		return errs.Conflict("a %s is running", g.holder)
	}
	g.holder = holder
	return nil
}

func (g *Gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.holder = ""
}

// Config configures a Runner.
type Config struct {
	Kind   string // "deploy", "restore": in messages and logs
	Gate   *Gate  // nil: runs of this runner do not exclude others
	Keep   int    // finished runs kept (default 20)
	Logger *slog.Logger
}

// Runner runs and remembers the runs of one kind.
type Runner[T any] struct {
	cfg Config
	log *slog.Logger
	wg  sync.WaitGroup

	mu    sync.Mutex
	runs  map[string]*Record[T]
	order []string
}

// NewRunner returns a runner. It starts nothing.
func NewRunner[T any](cfg Config) *Runner[T] {
	if cfg.Keep <= 0 {
		cfg.Keep = 20
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runner[T]{cfg: cfg, log: log, runs: map[string]*Record[T]{}}
}

// Start runs steps in the background until one fails or ctx ends, and
// returns the record as it starts. Through a shared gate, a run refuses to
// start while another runs (ErrConflict). onFail, when set, adds to the
// error of a failed run (e.g. "maintenance stays on").
func (r *Runner[T]) Start(ctx context.Context, data T, steps []Step[T], onFail func(Record[T]) string) (Record[T], error) {
	rec := &Record[T]{ID: newID(), Status: Running, Started: time.Now().UTC(), Data: data}
	for _, s := range steps {
		rec.Steps = append(rec.Steps, StepRecord{Name: s.Name, Status: Pending})
	}
	if r.cfg.Gate != nil {
		if err := r.cfg.Gate.enter(r.cfg.Kind + " " + rec.ID); err != nil {
			return Record[T]{}, err
		}
	}
	r.mu.Lock()
	r.runs[rec.ID] = rec
	r.order = append(r.order, rec.ID)
	if len(r.order) > r.cfg.Keep {
		delete(r.runs, r.order[0])
		r.order = r.order[1:]
	}
	snapshot := rec.copy()
	r.mu.Unlock()
	r.log.Info(r.cfg.Kind+" started", "id", rec.ID)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.run(ctx, rec, steps, onFail)
	}()
	return snapshot, nil
}

// Get returns the run id, if it is kept.
func (r *Runner[T]) Get(id string) (Record[T], error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.runs[id]
	if !ok {
		return Record[T]{}, errs.NotFound("no %s %q", r.cfg.Kind, id)
	}
	return rec.copy(), nil
}

// List returns the kept runs, oldest first.
func (r *Runner[T]) List() []Record[T] {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Record[T], len(r.order))
	for i, id := range r.order {
		out[i] = r.runs[id].copy()
	}
	return out
}

// Wait waits for the runs in progress (they end when their ctx does).
func (r *Runner[T]) Wait() { r.wg.Wait() }

func (r *Runner[T]) run(ctx context.Context, rec *Record[T], steps []Step[T], onFail func(Record[T]) string) {
	run := &Run[T]{r: r, rec: rec}
	var err error
	for i, s := range steps {
		r.mark(rec, i, Running, "")
		var detail string
		if detail, err = s.Do(ctx, run); err != nil {
			r.mark(rec, i, Failed, err.Error())
			break
		}
		r.mark(rec, i, OK, detail)
	}
	r.mu.Lock()
	now := time.Now().UTC()
	rec.Finished, rec.Seconds, rec.Status = &now, now.Sub(rec.Started).Seconds(), Succeeded
	if err != nil {
		rec.Status, rec.Error = Failed, err.Error()
		if onFail != nil {
			rec.Error += onFail(rec.copy())
		}
	}
	status, seconds := rec.Status, rec.Seconds
	r.mu.Unlock()
	if r.cfg.Gate != nil {
		r.cfg.Gate.leave()
	}
	r.log.Info(r.cfg.Kind+" finished", "id", rec.ID, "status", status, "seconds", seconds, "err", err)
}

// mark records a step's new status and detail: its start when it begins
// running, its end and duration when it ends.
func (r *Runner[T]) mark(rec *Record[T], i int, status, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &rec.Steps[i]
	now := time.Now().UTC()
	s.Status, s.Detail = status, detail
	if status == Running {
		s.Started = &now
		return
	}
	s.Finished = &now
	s.Seconds = now.Sub(*s.Started).Seconds()
	r.log.Info(r.cfg.Kind+" step", "id", rec.ID, "step", s.Name, "status", status, "seconds", s.Seconds)
}

func (rec *Record[T]) copy() Record[T] {
	c := *rec
	c.Steps = append([]StepRecord(nil), rec.Steps...)
	return c
}

// Run is a step's handle on its run.
type Run[T any] struct {
	r   *Runner[T]
	rec *Record[T]
}

// ID is the run's id.
func (run *Run[T]) ID() string { return run.rec.ID }

// Data returns what the run's steps recorded so far.
func (run *Run[T]) Data() T {
	run.r.mu.Lock()
	defer run.r.mu.Unlock()
	return run.rec.Data
}

// Update changes the run's data, visible to Get at once.
func (run *Run[T]) Update(f func(*T)) {
	run.r.mu.Lock()
	defer run.r.mu.Unlock()
	f(&run.rec.Data)
}

// newID is the start time and a random suffix: sortable and unique.
func newID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return time.Now().UTC().Format("20060102-150405-") + hex.EncodeToString(b)
}

// Package dump takes verified SQL dumps of the Moodle database on the
// controller — pg_dump -Fc for PostgreSQL, mysqldump piped through gzip for
// MySQL/MariaDB — on a cron schedule and on demand, keeps the newest db.keep
// of them, and restores one into another server. A dump is written to a
// temporary file, checked with the matching tool, fsynced and only then
// renamed to its final name, with its size and SHA-256 in a sidecar file; a
// failed dump never replaces or removes a good one. Credentials go to the
// tools in 0600 files, never in arguments or logs.
//
// The package owns the files it names in db.dump_dir (NAME-<UTC time>.dump
// or .sql.gz, their .json sidecars and its temporary files) and touches no
// other file there. It knows nothing of the cluster: maintenance and config
// rewrites around a database move belong to the agent.
package dump

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/nodeagent/nodeagent/internal/config"
)

// Errors callers branch on.
var (
	// ErrRunning: a dump is already running (one at a time).
	ErrRunning = errors.New("a dump is running")
	// ErrNotFound: no dump of that name.
	ErrNotFound = errors.New("no such dump")
)

// Triggers: what started a dump.
const (
	TriggerSchedule = "schedule"
	TriggerRequest  = "request"
	TriggerSwitch   = "switch"
)

// Statuses of a Record.
const (
	StatusOK      = "ok"
	StatusRunning = "running"
	StatusFailed  = "failed"
)

// Record describes one dump. Finished dumps are StatusOK; the running dump
// and a failed attempt carry the name they would have had.
type Record struct {
	Name     string    `json:"name"`
	Status   string    `json:"status"`
	Driver   string    `json:"driver"`
	Database string    `json:"database"`
	Trigger  string    `json:"trigger"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds,omitempty"`
	Size     int64     `json:"size,omitempty"`
	SHA256   string    `json:"sha256,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// Listing is the state of the dumps: GET /v1/db/dumps.
type Listing struct {
	Dumps         []Record   `json:"dumps"` // good dumps, oldest first
	Running       *Record    `json:"running"`
	LastFailure   *Record    `json:"last_failure"`
	LastSuccess   *time.Time `json:"last_success"`
	Failures      uint64     `json:"failures"` // failed dumps since the agent started
	NextScheduled *time.Time `json:"next_scheduled"`
	Schedule      string     `json:"schedule"`
	Keep          int        `json:"keep"`
	Dir           string     `json:"dir"`
}

// Stats are the numbers a metrics endpoint exports.
type Stats struct {
	Failures     uint64        // failed dumps since start
	LastSuccess  time.Time     // of the newest good dump; zero if none
	LastDuration time.Duration // of the last good dump
	LastSize     int64         // bytes of the last good dump
	Running      bool
}

// Config configures a Dumper.
type Config struct {
	DB config.DBConfig
	// Clock drives the schedule and names dumps; nil is the real clock.
	Clock Clock
	// NoSchedule disables the schedule loop (dumps on demand only).
	NoSchedule bool
	Logger     *slog.Logger
}

// Dumper takes, lists, serves and restores dumps of one database.
type Dumper struct {
	cfg   Config
	db    config.DBConfig
	eng   engine
	log   *slog.Logger
	clock Clock
	sched *config.Schedule

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	running     *Record
	lastFailure *Record
	failures    uint64
	lastGood    *Record
	next        time.Time
}

// New returns a Dumper. It does no I/O.
func New(cfg Config) *Dumper {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	clock := cfg.Clock
	if clock == nil {
		clock = realClock{}
	}
	return &Dumper{cfg: cfg, db: cfg.DB, log: log.With("component", "dump"), clock: clock}
}

// Open checks the configuration and the tools, creates dump_dir, removes
// temporary files a crash left behind and starts the schedule.
func (d *Dumper) Open(ctx context.Context) error {
	eng, err := newEngine(d.db)
	if err != nil {
		return err
	}
	d.eng = eng
	if d.sched, err = config.ParseSchedule(d.db.Schedule); err != nil {
		return fmt.Errorf("db.schedule: %w", err)
	}
	if err := os.MkdirAll(d.db.DumpDir, 0o700); err != nil {
		return fmt.Errorf("db.dump_dir: %w", err)
	}
	if err := d.removeTemps(); err != nil {
		return fmt.Errorf("db.dump_dir: %w", err)
	}
	dumps, err := d.scan()
	if err != nil {
		return fmt.Errorf("db.dump_dir: %w", err)
	}
	if n := len(dumps); n > 0 {
		d.lastGood = &dumps[n-1] // Stats survive a restart
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	if !d.cfg.NoSchedule {
		d.wg.Add(1)
		go d.scheduleLoop()
	}
	return nil
}

// Close stops the schedule and cancels a running dump or restore (its
// temporary file is removed; earlier dumps stay). It is idempotent.
func (d *Dumper) Close() error {
	if d.cancel != nil {
		d.cancel()
	}
	d.wg.Wait()
	return nil
}

// Stats returns the numbers for the metrics endpoint.
func (d *Dumper) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := Stats{Failures: d.failures, Running: d.running != nil}
	if g := d.lastGood; g != nil {
		s.LastSuccess = g.finished()
		s.LastDuration = g.duration()
		s.LastSize = g.Size
	}
	return s
}

// List returns the good dumps on disk and the state of the runs.
func (d *Dumper) List() (Listing, error) {
	dumps, err := d.scan()
	if err != nil {
		return Listing{}, err
	}
	l := Listing{Dumps: dumps, Schedule: d.db.Schedule, Keep: d.db.Keep, Dir: d.db.DumpDir}
	if l.Dumps == nil {
		l.Dumps = []Record{}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	l.Running = copyRecord(d.running)
	l.LastFailure = copyRecord(d.lastFailure)
	l.Failures = d.failures
	if !d.next.IsZero() {
		next := d.next
		l.NextScheduled = &next
	}
	if d.lastGood != nil {
		t := d.lastGood.finished()
		l.LastSuccess = &t
	}
	return l, nil
}

func (r *Record) duration() time.Duration { return time.Duration(r.Seconds * float64(time.Second)) }

func (r *Record) finished() time.Time { return r.Started.Add(r.duration()) }

func copyRecord(r *Record) *Record {
	if r == nil {
		return nil
	}
	c := *r
	return &c
}

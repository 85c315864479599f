package mirror

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"
)

// SyncerConfig configures a Syncer.
type SyncerConfig struct {
	Releases *Releases
	// Source returns where to fetch from, asked before each attempt (the
	// controller may have moved).
	Source func(ctx context.Context) (Source, error)
	// OnApplied is called after each successful switch, from the syncer's
	// goroutine.
	OnApplied func(Revision)
	// OnAttempt, when set, is called after each sync attempt with how long
	// it took and its error (nil, or wrapping ErrAfterSwitch, when the switch
	// happened), from the syncer's goroutine.
	OnAttempt func(target Revision, took time.Duration, err error)
	Logger    *slog.Logger
	// RetryMin and RetryMax bound the exponential backoff after a failed
	// sync; default 1 s and 5 s (one request to the controller every 5 s
	// while it is unreachable costs nothing, and a node serves the target
	// within seconds of a partition healing).
	RetryMin, RetryMax time.Duration
}

// Syncer keeps the current release at the target revision: it applies each
// new target, retrying failures with backoff. Targets set during an Apply
// are coalesced: the newest one is applied next.
type Syncer struct {
	cfg  SyncerConfig
	log  *slog.Logger
	wake chan struct{}

	mu        sync.Mutex
	target    Revision
	lastErr   error
	lastErrAt time.Time
	stopSpare context.CancelFunc // cancels the spare being made, if any
	spareFail string             // the release whose spare failed: not tried again

	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// NewSyncer returns a syncer; Open starts it.
func NewSyncer(cfg SyncerConfig) *Syncer {
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = time.Second
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(5*time.Second, cfg.RetryMin)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Syncer{cfg: cfg, log: log, wake: make(chan struct{}, 1)}
}

// Open starts the sync loop; Close stops it.
func (s *Syncer) Open(ctx context.Context) error {
	if s.cfg.Releases == nil || s.cfg.Source == nil {
		return errors.New("open syncer: Releases and Source are required")
	}
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		s.run(ctx)
	}()
	return nil
}

// Close stops the loop, interrupting an Apply in progress (which leaves
// Target untouched), and waits for it.
func (s *Syncer) Close() error {
	s.closeOnce.Do(func() {
		if s.cancel != nil {
			s.cancel()
			<-s.done
		}
	})
	return nil
}

// SetTarget makes rev (at least its ID and Seq) the revision to apply.
func (s *Syncer) SetTarget(rev Revision) {
	s.mu.Lock()
	changed := rev.ID != s.target.ID
	s.target = rev
	if changed && s.stopSpare != nil && s.cfg.Releases.IsKept(rev.ID) {
		// A switch to a kept release needs no spare: it comes first. Any
		// other target waits for the spare, which is the first half of
		// its own build.
		s.stopSpare()
	}
	s.mu.Unlock()
	if changed {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// LastError returns the error of the last sync attempt and when it happened;
// nil after a success. A failed AfterSwitch is reported here too, though the
// switch stands.
func (s *Syncer) LastError() (error, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr, s.lastErrAt
}

func (s *Syncer) setError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr, s.lastErrAt = err, time.Time{}
	if err != nil {
		s.lastErrAt = time.Now()
	}
}

func (s *Syncer) currentTarget() Revision {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.target
}

func (s *Syncer) run(ctx context.Context) {
	delay := s.cfg.RetryMin
	lastLogged, failing := "", ""
	for {
		target := s.currentTarget()
		cur, _ := s.cfg.Releases.Current()
		if target.ID == "" || target.ID == cur.ID {
			s.prepareSpare(ctx, cur.ID)
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
				continue
			}
		}
		if target.ID != failing {
			delay = s.cfg.RetryMin // a new target starts a fresh backoff
		}
		start := time.Now()
		err := s.apply(ctx, target)
		if ctx.Err() != nil {
			return
		}
		if s.cfg.OnAttempt != nil {
			s.cfg.OnAttempt(target, time.Since(start), err)
		}
		s.setError(err)
		if err == nil || errors.Is(err, ErrAfterSwitch) {
			lastLogged, failing = "", ""
			if s.cfg.OnApplied != nil {
				cur, _ := s.cfg.Releases.Current()
				s.cfg.OnApplied(cur)
			}
			continue
		}
		if msg := err.Error(); msg != lastLogged {
			s.log.Error("sync", "target", target.ID, "seq", target.Seq, "retry_in", delay, "err", err)
			lastLogged = msg
		} else {
			s.log.Debug("sync", "target", target.ID, "retry_in", delay, "err", err)
		}
		failing = target.ID
		if !s.sleep(ctx, delay) {
			return
		}
		delay = min(delay*2, s.cfg.RetryMax)
	}
}

func (s *Syncer) apply(ctx context.Context, target Revision) error {
	src, err := s.cfg.Source(ctx)
	if err != nil {
		return err
	}
	return s.cfg.Releases.Apply(ctx, target, src)
}

// sleep waits d or until a new target arrives; false when ctx is done.
func (s *Syncer) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-s.wake:
	case <-t.C:
	}
	return true
}

// prepareSpare makes the warm spare of the current release while the node
// is idle; a rollback to a kept release stops it at once (SetTarget).
func (s *Syncer) prepareSpare(ctx context.Context, cur string) {
	s.mu.Lock()
	skip := s.spareFail == cur || (s.target.ID != "" && s.target.ID != cur)
	ctx, cancel := context.WithCancel(ctx)
	s.stopSpare = cancel
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.stopSpare = nil
		s.mu.Unlock()
		cancel()
	}()
	if skip || !s.cfg.Releases.SpareWanted() {
		return
	}
	err := s.cfg.Releases.PrepareSpare(ctx)
	// Making the spare grew the heap with manifests: give it back to keep
	// the idle node small.
	defer debug.FreeOSMemory()
	if err != nil && ctx.Err() == nil {
		s.log.Warn("no warm spare: the next sync links the whole tree", "release", cur, "err", err)
		s.mu.Lock()
		s.spareFail = cur
		s.mu.Unlock()
	}
}

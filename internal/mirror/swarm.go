package mirror

import (
	"cmp"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Swarm is a web node's long-lived memory of where its content comes from:
// how each source behaved (one that failed is avoided for a while, with a
// growing pause; one that sent bad bytes is banned for badSourceBan) and
// what each gave to the current sync. The Sources of every sync attempt
// share it, so a ban outlives the attempt that earned it.
type Swarm struct {
	log *slog.Logger

	mu      sync.Mutex
	health  map[string]*sourceHealth
	rev     string // the revision counts are about
	started time.Time
	counts  map[string]*SourceCount
	totals  map[string]int64 // bytes by kind, ever
}

// Source kinds.
const (
	KindController = "controller"
	KindPeer       = "peer"
)

// Source states.
const (
	SourceOK      = "ok"
	SourceBusy    = "busy"
	SourceAvoided = "avoided"
	SourceBanned  = "banned"
)

// How long sources are avoided.
const (
	failPauseMin      = time.Second
	peerFailPauseMax  = time.Minute
	ctlFailPauseMax   = 10 * time.Second
	busyPause         = 300 * time.Millisecond
	busyLimit         = 10 // busy answers in a row that count as a failure
	badSourceBan      = 10 * time.Minute
	maxReasonLen      = 300
	maxSourcesCounted = 256
)

// sourceHealth is how one source behaved lately.
type sourceHealth struct {
	failures int
	busyRun  int // busy answers in a row
	state    string
	until    time.Time // not asked before
	reason   string
}

// SourceCount is what one source gave to a sync, and its state now.
type SourceCount struct {
	Name     string     `json:"name"`
	Kind     string     `json:"kind"` // controller | peer
	Bytes    int64      `json:"bytes"`
	Objects  int64      `json:"objects"`
	Requests int64      `json:"requests"`
	Failures int64      `json:"failures"`
	State    string     `json:"state"` // ok | busy | avoided | banned
	Until    *time.Time `json:"until,omitempty"`
	Reason   string     `json:"reason,omitempty"`
}

// SyncSources is where the content of a sync came from.
type SyncSources struct {
	Revision string        `json:"revision"`
	Started  time.Time     `json:"started"`
	Sources  []SourceCount `json:"sources"`
}

// NewSwarm returns an empty swarm.
func NewSwarm(log *slog.Logger) *Swarm {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Swarm{log: log, health: map[string]*sourceHealth{}, counts: map[string]*SourceCount{}, totals: map[string]int64{}}
}

// begin makes rev the revision counted; a new one starts from zero.
func (w *Swarm) begin(rev string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if rev != w.rev {
		w.rev, w.started, w.counts = rev, time.Now(), map[string]*SourceCount{}
	}
}

func (w *Swarm) count(name, kind string) *SourceCount {
	c := w.counts[name]
	if c == nil {
		if len(w.counts) >= maxSourcesCounted {
			return &SourceCount{} // counted nowhere; a cluster is smaller
		}
		c = &SourceCount{Name: name, Kind: kind}
		w.counts[name] = c
	}
	return c
}

func (w *Swarm) state(name string) *sourceHealth {
	h := w.health[name]
	if h == nil {
		h = &sourceHealth{state: SourceOK}
		w.health[name] = h
	}
	return h
}

// ready reports whether name may be asked now.
func (w *Swarm) ready(name string, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.health[name]
	return h == nil || !now.Before(h.until)
}

// healthy reports whether name counts as a holder of content: neither
// failing nor banned (a busy source is healthy).
func (w *Swarm) healthy(name string, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.health[name]
	return h == nil || h.state == SourceOK || h.state == SourceBusy || !now.Before(h.until)
}

func (w *Swarm) requested(name, kind string) {
	w.mu.Lock()
	w.count(name, kind).Requests++
	w.mu.Unlock()
}

// document counts the bytes of a manifest name sent.
func (w *Swarm) document(name, kind string, size int64) {
	w.mu.Lock()
	w.count(name, kind).Bytes += size
	w.totals[kind] += size
	w.mu.Unlock()
}

func (w *Swarm) delivered(name, kind string, size int64) {
	w.mu.Lock()
	c := w.count(name, kind)
	c.Bytes += size
	c.Objects++
	w.totals[kind] += size
	w.mu.Unlock()
}

// Totals returns the bytes received ever, by kind of source.
func (w *Swarm) Totals() map[string]int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return map[string]int64{KindController: w.totals[KindController], KindPeer: w.totals[KindPeer]}
}

// succeeded clears name's failures.
func (w *Swarm) succeeded(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if h := w.health[name]; h != nil && h.state != SourceBanned {
		h.failures, h.busyRun, h.state, h.until, h.reason = 0, 0, SourceOK, time.Time{}, ""
	}
}

// busy pauses name shortly: it serves as much as it allows. A source busy
// busyLimit times in a row has failed: what it holds is fetched elsewhere.
func (w *Swarm) busy(name, kind string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.state(name)
	if h.busyRun++; h.busyRun >= busyLimit {
		h.busyRun = 0
		w.failLocked(name, kind, err)
		return
	}
	if h.state == SourceOK || h.state == SourceBusy {
		h.state, h.until = SourceBusy, time.Now().Add(busyPause)
	}
}

// failed avoids name for a pause that doubles with each failure in a row.
func (w *Swarm) failed(name, kind string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failLocked(name, kind, err)
}

func (w *Swarm) failLocked(name, kind string, err error) {
	w.count(name, kind).Failures++
	h := w.state(name)
	if h.state == SourceBanned && time.Now().Before(h.until) {
		return
	}
	h.failures++
	limit := peerFailPauseMax
	if kind == KindController {
		limit = ctlFailPauseMax
	}
	pause := min(failPauseMin<<min(h.failures-1, 10), limit)
	h.state, h.until, h.reason = SourceAvoided, time.Now().Add(pause), shorten(err.Error())
	w.log.Info("content source avoided", "source", name, "kind", kind, "for", pause, "err", err)
}

// ban avoids name for badSourceBan: it sent content that is not what was
// asked.
func (w *Swarm) ban(name, kind string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.count(name, kind).Failures++
	h := w.state(name)
	h.failures++
	h.state, h.until, h.reason = SourceBanned, time.Now().Add(badSourceBan), shorten(err.Error())
	w.log.Warn("content source banned: it sent bad content", "source", name, "kind", kind, "for", badSourceBan, "err", err)
}

func shorten(s string) string {
	if len(s) > maxReasonLen {
		return s[:maxReasonLen] + "…"
	}
	return s
}

// Report returns where the content of the current (or last) sync came
// from, the largest source first, with each source's state now.
func (w *Swarm) Report() SyncSources {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	rep := SyncSources{Revision: w.rev, Started: w.started, Sources: make([]SourceCount, 0, len(w.counts))}
	for name, c := range w.counts {
		sc := *c
		sc.State = SourceOK
		if h := w.health[name]; h != nil && now.Before(h.until) {
			until := h.until
			sc.State, sc.Until, sc.Reason = h.state, &until, h.reason
		}
		rep.Sources = append(rep.Sources, sc)
	}
	slices.SortFunc(rep.Sources, func(a, b SourceCount) int {
		return cmp.Or(cmp.Compare(b.Bytes, a.Bytes), cmp.Compare(a.Name, b.Name))
	})
	return rep
}

package mirror

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	sha256 "github.com/minio/sha256-simd"
)

// Peer is another web node that may hold content of the revision fetched.
type Peer struct {
	Name   string
	Client *Client
	// Complete: the peer serves the revision, so it holds all of its
	// content. Otherwise it is syncing it and holds what it stored so far.
	Complete bool
}

// SourcesConfig configures Sources.
type SourcesConfig struct {
	// Self is this node's name: it takes part in the shares (schedule.go).
	Self string
	// Controller is the controller's mirror client, nil when no live
	// controller is known; ControllerName names it in the counts.
	Controller     Source
	ControllerName string
	// Peers lists the other web nodes serving or syncing revision id. It
	// is asked again during a sync, as nodes join, finish or die.
	Peers func(id string) []Peer
	// Swarm remembers the sources' health and counts across attempts.
	Swarm  *Swarm
	Logger *slog.Logger
}

// Sources is a Source that spreads a sync over the controller and the
// peers (a multi-source download, as BitTorrent's or Kraken's, kept simple
// for a code tree of small files): content comes from peers whenever a
// healthy peer holds it; the controller sends what no peer holds yet (each
// syncing node asking first for its own share, so that together they ask
// for each object about once) and whatever peers fail to deliver. Peers
// that fail are avoided for a while, peers that send bad bytes for longer
// (see Swarm); their content is fetched elsewhere. Every byte is verified
// by the caller against the manifest, whoever sent it.
//
// One Sources serves one sync attempt (Releases.Apply).
type Sources struct {
	cfg   SourcesConfig
	log   *slog.Logger
	swarm *Swarm

	mu       sync.Mutex
	rev      string
	peers    map[string]*peerState
	asked    time.Time // when cfg.Peers was last asked
	inflight map[string]int
	changed  chan struct{} // closed at news: have logs, peer list

	polling struct {
		active int // runs in progress
		ctx    context.Context
		cancel context.CancelFunc
		wg     sync.WaitGroup
	}
}

var _ Source = (*Sources)(nil)

// peerState is a peer and what it said it holds.
type peerState struct {
	Peer
	epoch uint64   // of the build its log is about
	log   []uint64 // prefixes of what it stored, in order
	gone  bool     // no longer listed
	stop  context.CancelFunc
}

// Request limits of Sources.
const (
	peersRefresh = time.Second
	haveWait     = 5 * time.Second
	havePollGap  = time.Second // each poll costs both ends a TLS request
	haveRetry    = time.Second
)

// NewSources returns the sources of one sync attempt.
func NewSources(cfg SourcesConfig) *Sources {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Swarm == nil {
		cfg.Swarm = NewSwarm(log)
	}
	if cfg.ControllerName == "" {
		cfg.ControllerName = KindController
	}
	return &Sources{cfg: cfg, log: log, swarm: cfg.Swarm, peers: map[string]*peerState{},
		inflight: map[string]int{}, changed: make(chan struct{})}
}

// wholeRound marks Sources as planning its own requests: fetch.go hands it
// every object of a round at once.
func (s *Sources) wholeRound() {}

// setRev records the revision being fetched: the first one asked about.
func (s *Sources) setRev(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rev == "" {
		s.rev = id
		s.swarm.begin(id)
	}
}

// attempt is one source to ask for a document.
type attempt struct {
	name, kind string
	src        Source
}

// Revision returns the metadata of id: from the controller, else from a
// peer holding id.
func (s *Sources) Revision(ctx context.Context, id string) (Revision, error) {
	s.setRev(id)
	var errs []error
	for _, a := range s.documentSources(true) {
		rev, err := a.src.Revision(ctx, id)
		if err == nil {
			return rev, nil
		}
		if ctx.Err() != nil {
			return Revision{}, ctx.Err()
		}
		errs = append(errs, fmt.Errorf("%s: %w", a.name, err))
	}
	return Revision{}, s.noSource("revision "+id, errs)
}

// Manifest returns the manifest bytes of id, checked against id: from a
// peer that serves it, else the controller, else a peer syncing it.
func (s *Sources) Manifest(ctx context.Context, id string) ([]byte, error) {
	s.setRev(id)
	var errs []error
	for _, a := range s.documentSources(false) {
		data, err := a.src.Manifest(ctx, id)
		if err == nil {
			if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) == id {
				s.swarm.document(a.name, a.kind, int64(len(data)))
				return data, nil
			}
			err = fmt.Errorf("%w: manifest does not hash to %s", ErrBadManifest, id)
			s.swarm.ban(a.name, a.kind, err)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		errs = append(errs, fmt.Errorf("%s: %w", a.name, err))
	}
	return nil, s.noSource("manifest "+id, errs)
}

// Delta asks the controller only: peers serve whole manifests.
func (s *Sources) Delta(ctx context.Context, id, base string) (*Delta, error) {
	s.setRev(id)
	if s.cfg.Controller == nil {
		return nil, fmt.Errorf("delta %s..%s: %w (no live controller)", base, id, ErrRemoteNotFound)
	}
	return s.cfg.Controller.Delta(ctx, id, base)
}

// documentSources orders the sources to ask for a document: the
// controller first for small metadata (ctlFirst), else peers serving the
// revision, then the controller, then peers syncing it. Sources that are
// avoided now come last.
func (s *Sources) documentSources(ctlFirst bool) []attempt {
	s.refreshPeers(true)
	var complete, partial []attempt
	s.mu.Lock()
	for _, p := range s.peers {
		a := attempt{name: p.Name, kind: KindPeer, src: p.Client}
		if p.Complete {
			complete = append(complete, a)
		} else {
			partial = append(partial, a)
		}
	}
	s.mu.Unlock()
	rand.Shuffle(len(complete), func(i, j int) { complete[i], complete[j] = complete[j], complete[i] })
	rand.Shuffle(len(partial), func(i, j int) { partial[i], partial[j] = partial[j], partial[i] })
	var ctl []attempt
	if s.cfg.Controller != nil {
		ctl = append(ctl, attempt{name: s.cfg.ControllerName, kind: KindController, src: s.cfg.Controller})
	}
	var order []attempt
	if ctlFirst {
		order = append(append(append(order, ctl...), complete...), partial...)
	} else {
		order = append(append(append(order, complete...), ctl...), partial...)
	}
	now := time.Now()
	var ready, later []attempt
	for _, a := range order {
		if s.swarm.ready(a.name, now) {
			ready = append(ready, a)
		} else {
			later = append(later, a)
		}
	}
	return append(ready, later...)
}

func (s *Sources) noSource(what string, errs []error) error {
	if len(errs) == 0 {
		return fmt.Errorf("%s: no source: no live controller and no peer holds it", what)
	}
	return fmt.Errorf("%s: %w", what, errors.Join(errs...))
}

// Objects fetches hashes from the sources as schedule.go plans.
func (s *Sources) Objects(ctx context.Context, hashes []Hash, fn func(h Hash, size int64, r io.Reader) error) error {
	s.startPolling(ctx)
	defer s.stopPolling()
	return newFetchRun(s, hashes, fn).run(ctx)
}

// refreshPeers asks cfg.Peers again when peersRefresh has passed (or now
// when force), and starts or stops the have polls to match.
func (s *Sources) refreshPeers(force bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Peers == nil || s.rev == "" || !force && time.Since(s.asked) < peersRefresh {
		return
	}
	s.asked = time.Now()
	listed := map[string]bool{}
	for _, p := range s.cfg.Peers(s.rev) {
		if p.Name == "" || p.Name == s.cfg.Self || p.Client == nil {
			continue
		}
		listed[p.Name] = true
		ps := s.peers[p.Name]
		if ps == nil {
			ps = &peerState{Peer: p}
			s.peers[p.Name] = ps
			s.notifyLocked()
		}
		if p.Complete && !ps.Complete {
			ps.Complete = true
			s.notifyLocked()
		}
		ps.gone = false
		s.startPollLocked(ps)
	}
	for name, ps := range s.peers {
		if !listed[name] {
			ps.gone = true
			if ps.stop != nil {
				ps.stop()
				ps.stop = nil
			}
			delete(s.peers, name)
			s.notifyLocked()
		}
	}
}

// notifyLocked wakes the runs waiting for news.
func (s *Sources) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// news returns the channel closed at the next news.
func (s *Sources) news() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// startPolling starts the have polls of syncing peers for a run; the last
// run to end stops them (stopPolling).
func (s *Sources) startPolling(ctx context.Context) {
	s.mu.Lock()
	p := &s.polling
	p.active++
	if p.active == 1 {
		p.ctx, p.cancel = context.WithCancel(ctx)
	}
	s.mu.Unlock()
	s.refreshPeers(true)
}

func (s *Sources) stopPolling() {
	s.mu.Lock()
	p := &s.polling
	p.active--
	if p.active > 0 {
		s.mu.Unlock()
		return
	}
	p.cancel()
	for _, ps := range s.peers {
		ps.stop = nil
	}
	s.mu.Unlock()
	p.wg.Wait()
}

// startPollLocked starts polling what a syncing peer holds.
func (s *Sources) startPollLocked(ps *peerState) {
	p := &s.polling
	if ps.Complete || ps.stop != nil || p.active == 0 {
		return
	}
	ctx, cancel := context.WithCancel(p.ctx)
	ps.stop = cancel
	p.wg.Go(func() { s.poll(ctx, ps) })
}

// poll follows a syncing peer's have log until it is complete or ctx ends.
// A failed poll only delays what the run learns (on a busy link the answer
// may wait behind content already queued on the same connection), unless
// the peer cannot even be connected to: then it is not there (gossip may
// take seconds to say so), and its share is helped with at once.
func (s *Sources) poll(ctx context.Context, ps *peerState) {
	for {
		s.mu.Lock()
		rev, epoch, from := s.rev, ps.epoch, len(ps.log)
		s.mu.Unlock()
		ans, err := ps.Client.have(ctx, rev, epoch, from, haveWait)
		if ctx.Err() != nil {
			return
		}
		gap := havePollGap
		switch {
		case unreachable(err):
			s.swarm.failed(ps.Name, KindPeer, err)
			gap = haveRetry
		case err != nil:
			s.log.Debug("have poll", "peer", ps.Name, "err", err)
			gap = haveRetry
		default:
			s.recordHave(ps, ans)
			if ans.Complete {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(gap):
		}
	}
}

// recordHave adds a have answer to what ps holds.
func (s *Sources) recordHave(ps *peerState, ans haveAnswer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case ans.Complete:
		ps.Complete = true
	case ans.Epoch != ps.epoch:
		ps.epoch, ps.log = ans.Epoch, nil
		if ans.From == 0 {
			ps.log = append(ps.log, ans.Objects...)
		}
	case ans.From == len(ps.log):
		ps.log = append(ps.log, ans.Objects...)
	}
	s.notifyLocked()
}

// unreachable reports whether err is a failure to connect (refused, no
// route, dial timeout), not one of a request under way.
func unreachable(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

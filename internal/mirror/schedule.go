package mirror

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"sync/atomic"
	"time"
)

// How Sources plans the objects of a round (fetchRun):
//
//   - The syncing nodes (this one and the peers syncing the same revision)
//     split the objects into shares by rendezvous hashing of the object's
//     hash with each node's name: every node computes the same owner for an
//     object without talking to the others. Within a run the set only grows
//     (a node that joins takes its share; one that finishes or goes away
//     keeps it, and the others help with what it did not get), so that a
//     node flapping in gossip does not move shares back and forth.
//   - Upstream is the peers serving the revision (they hold everything) or,
//     when no healthy one is known, the controller. A node asks upstream
//     for its own share, in order. Together the nodes ask upstream for each
//     object about once.
//   - A node that has asked for all of its share helps the owners that are
//     gone, failing, or make no progress (no object of their share stored
//     for helpStall): one small request at a time, from the far end of
//     their shares, where they are least likely to have got yet. Helping
//     an owner that is merely slow costs the controller twice, so the
//     patience is long; a lost owner is helped at once.
//   - Everything a syncing peer says it holds (its have log) is asked of
//     that peer, spread over the peers that hold it.
//   - A request that fails puts its objects back; a peer that fails is
//     avoided for a while and what only it held goes back upstream.
const (
	peerRequestObjects     = 128
	upstreamRequestObjects = 256
	helpRequestObjects     = 32
	helpStall              = 15 * time.Second
	peerInFlight           = 2
	upstreamInFlight       = 2
	runTick                = 250 * time.Millisecond
	// stallLimit: a round fails when no object arrived for this long.
	stallLimit = 30 * time.Second
)

// Object states in a run.
const (
	objPending = iota
	objInFlight
	objDone
)

type runObj struct {
	hash    Hash
	owner   string // the syncing node whose share it is
	state   uint8
	holders []string // syncing peers that said they hold it
}

// peerCursor is how far a run has read a syncing peer's have log, and the
// objects it learned of there, to ask that peer for.
type peerCursor struct {
	epoch uint64
	read  int
	queue []*runObj
	next  int
	ok    bool // listed and healthy at the last look
	// lastOwn is when the peer last stored an object of its share (or
	// when the run met it).
	lastOwn time.Time
}

// fetchRun fetches one round of objects for Sources.Objects. Its fields
// are owned by the run's goroutine; requests report through results.
type fetchRun struct {
	s        *Sources
	fn       func(h Hash, size int64, r io.Reader) error
	objs     []*runObj // in the caller's order
	byPrefix map[uint64][]*runObj
	left     int

	shareOf []string // the syncing nodes the shares were made for
	own     []*runObj
	ownNext int
	others  []*runObj // from the far end
	retry   []*runObj
	cursors map[string]*peerCursor

	results   chan reqResult
	inflight  int
	sourceCtx map[string]sourceCtx // ends the requests to a source
	helping   int                  // help requests in flight
	fatal     error
	lastGood  atomic.Int64 // unix nanoseconds of the last delivery
	lastError error
}

// sourceCtx is the context of the requests to one source.
type sourceCtx struct {
	ctx    context.Context
	cancel context.CancelFunc
}

type reqResult struct {
	name, kind string
	help       bool
	batch      []*runObj
	delivered  []bool
	err        error
}

func newFetchRun(s *Sources, hashes []Hash, fn func(Hash, int64, io.Reader) error) *fetchRun {
	r := &fetchRun{s: s, fn: fn, objs: make([]*runObj, len(hashes)), byPrefix: make(map[uint64][]*runObj, len(hashes)),
		left: len(hashes), cursors: map[string]*peerCursor{}, results: make(chan reqResult),
		sourceCtx: map[string]sourceCtx{}}
	for i, h := range hashes {
		o := &runObj{hash: h}
		r.objs[i] = o
		p := hashPrefix(h)
		r.byPrefix[p] = append(r.byPrefix[p], o)
	}
	r.lastGood.Store(time.Now().UnixNano())
	return r
}

// run fetches every object, or fails on a disk error, the end of ctx, or
// stallLimit without any object arriving.
func (r *fetchRun) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		for r.inflight > 0 {
			r.complete(<-r.results)
		}
	}()
	tick := time.NewTicker(runTick)
	defer tick.Stop()
	for r.left > 0 {
		if r.fatal != nil {
			return r.fatal
		}
		news := r.s.news()
		r.s.refreshPeers(false)
		r.plan()
		r.dispatch(ctx)
		if err := r.stalled(); err != nil {
			return err
		}
		select {
		case res := <-r.results:
			r.complete(res)
		case <-news:
		case <-tick.C:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	return r.fatal
}

// stalled returns an error when nothing arrived for stallLimit and nothing
// is under way, or when there is no source at all.
func (r *fetchRun) stalled() error {
	if r.inflight > 0 {
		return nil
	}
	r.s.mu.Lock()
	peers := len(r.s.peers)
	r.s.mu.Unlock()
	if peers == 0 && r.s.cfg.Controller == nil {
		return fmt.Errorf("objects: no source: no live controller and no peer holds revision %s", r.s.rev)
	}
	if time.Since(time.Unix(0, r.lastGood.Load())) < stallLimit {
		return nil
	}
	why := "no source holds them"
	if r.lastError != nil {
		why = r.lastError.Error()
	}
	return fmt.Errorf("objects: %d still missing, nothing arrived for %s: %s", r.left, stallLimit, why)
}

// plan brings the run up to date with the sources: shares for the current
// set of syncing nodes, what syncing peers hold, which of them fail.
func (r *fetchRun) plan() {
	s := r.s
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	r.growShares()
	for name, c := range r.cursors {
		if _, listed := s.peers[name]; listed {
			continue
		}
		// Gone from gossip: its requests would wait for a dead
		// connection to time out.
		if c.ok {
			c.ok = false
			r.orphan(c)
		}
		if sc, ok := r.sourceCtx[name]; ok {
			sc.cancel()
			delete(r.sourceCtx, name)
		}
	}
	for name, p := range s.peers {
		c := r.cursors[name]
		if c == nil {
			c = &peerCursor{epoch: p.epoch, ok: true, lastOwn: now}
			r.cursors[name] = c
		}
		if p.epoch != c.epoch {
			c.epoch, c.read, c.queue, c.next = p.epoch, 0, nil, 0
		}
		for _, prefix := range p.log[c.read:] {
			for _, o := range r.byPrefix[prefix] {
				if o.owner == name {
					c.lastOwn = now
				}
				if o.state != objDone {
					o.holders = append(o.holders, name)
					c.queue = append(c.queue, o)
				}
			}
		}
		c.read = len(p.log)
		ok := s.swarm.healthy(name, now)
		if c.ok && !ok {
			c.ok = false
			r.orphan(c)
		}
		c.ok = ok
	}
}

// growShares adds this node and the syncing peers to the set the shares
// are made for, and makes them anew when it grew. Called with s.mu held.
func (r *fetchRun) growShares() {
	s := r.s
	syncing := slices.Clone(r.shareOf)
	for _, name := range append([]string{s.cfg.Self}, slices.Collect(maps.Keys(s.peers))...) {
		if p := s.peers[name]; (p == nil || !p.Complete) && !slices.Contains(syncing, name) {
			syncing = append(syncing, name)
		}
	}
	if len(syncing) != len(r.shareOf) {
		sort.Strings(syncing)
		r.share(syncing)
		s.log.Debug("content shares", "nodes", len(syncing), "own", len(r.own), "objects", len(r.objs))
	}
}

// share marks the objects this node owns among the syncing nodes and
// orders the rest from the far end.
func (r *fetchRun) share(syncing []string) {
	r.shareOf = syncing
	seeds := make([]uint64, len(syncing))
	for i, name := range syncing {
		h := fnv.New64a()
		h.Write([]byte(name))
		seeds[i] = h.Sum64()
	}
	r.own, r.others, r.ownNext = nil, nil, 0
	for _, o := range r.objs {
		o.owner = syncing[owner(hashPrefix(o.hash), seeds)]
		if o.owner == r.s.cfg.Self {
			r.own = append(r.own, o)
		} else if o.state != objDone {
			r.others = append(r.others, o)
		}
	}
	slices.Reverse(r.others)
	now := time.Now()
	for _, c := range r.cursors {
		c.lastOwn = now // new shares: their owners get a fresh start
	}
}

// owner is the index of the node that owns an object: the highest
// rendezvous score.
func owner(prefix uint64, seeds []uint64) int {
	best, bestScore := 0, uint64(0)
	for i, seed := range seeds {
		if s := mix64(prefix ^ seed); i == 0 || s > bestScore {
			best, bestScore = i, s
		}
	}
	return best
}

// mix64 is splitmix64's finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// orphan sends back upstream what a peer that fails or went away was to
// send and no other listed, healthy peer holds.
func (r *fetchRun) orphan(c *peerCursor) {
	for _, o := range c.queue[c.next:] {
		if o.state == objPending && !r.heldElsewhere(o) {
			r.retry = append(r.retry, o)
		}
	}
}

// heldElsewhere reports whether a syncing peer that is listed and healthy
// (at the last plan) holds o.
func (r *fetchRun) heldElsewhere(o *runObj) bool {
	for _, name := range o.holders {
		if c := r.cursors[name]; c != nil && c.ok {
			return true
		}
	}
	return false
}

// source is a source a request can go to now.
type source struct {
	name, kind string
	src        Source
	complete   bool
	free       int
}

// dispatch sends requests to every source with a free slot: syncing peers
// for what they hold, then upstream.
func (r *fetchRun) dispatch(ctx context.Context) {
	now := time.Now()
	partial, upstream := r.sources(now)
	for _, p := range partial {
		for range p.free {
			batch := r.takeFromPeer(p.name)
			if len(batch) == 0 {
				break
			}
			r.launch(ctx, p, batch, false)
		}
	}
	for _, u := range upstream {
		for range u.free {
			batch, help := r.takeUpstream(now)
			if len(batch) == 0 {
				return
			}
			r.launch(ctx, u, batch, help)
		}
	}
}

// sources returns the syncing peers and the upstream sources that may be
// asked now, in random order. Upstream is the healthy complete peers, or
// the controller when there is none.
func (r *fetchRun) sources(now time.Time) (partial, upstream []source) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	completeHealthy := false
	for name, p := range s.peers {
		if p.Complete && s.swarm.healthy(name, now) {
			completeHealthy = true
		}
		if !s.swarm.ready(name, now) {
			continue
		}
		src := source{name: name, kind: KindPeer, src: p.Client, complete: p.Complete}
		if p.Complete {
			src.free = upstreamInFlight - s.inflight[name]
			upstream = append(upstream, src)
		} else {
			src.free = peerInFlight - s.inflight[name]
			partial = append(partial, src)
		}
	}
	if !completeHealthy && s.cfg.Controller != nil && s.swarm.ready(s.cfg.ControllerName, now) {
		upstream = append(upstream, source{name: s.cfg.ControllerName, kind: KindController, src: s.cfg.Controller,
			complete: true, free: upstreamInFlight - s.inflight[s.cfg.ControllerName]})
	}
	rand.Shuffle(len(partial), func(i, j int) { partial[i], partial[j] = partial[j], partial[i] })
	rand.Shuffle(len(upstream), func(i, j int) { upstream[i], upstream[j] = upstream[j], upstream[i] })
	return partial, upstream
}

// takeFromPeer picks what the syncing peer name said it holds.
func (r *fetchRun) takeFromPeer(name string) []*runObj {
	var batch []*runObj
	r.retry = slices.DeleteFunc(r.retry, func(o *runObj) bool {
		if o.state != objPending {
			return true
		}
		if len(batch) < peerRequestObjects && slices.Contains(o.holders, name) {
			batch = take(batch, o)
			return true
		}
		return false
	})
	c := r.cursors[name]
	for c != nil && c.next < len(c.queue) && len(batch) < peerRequestObjects {
		if o := c.queue[c.next]; o.state == objPending {
			batch = take(batch, o)
		}
		c.next++
	}
	return batch
}

// take adds o to batch and marks it in flight, so that it is not taken
// twice (it may stand in several lists).
func take(batch []*runObj, o *runObj) []*runObj {
	o.state = objInFlight
	return append(batch, o)
}

// takeUpstream picks what no healthy peer holds: what came back from
// failed requests and this node's own share; once that is all asked for,
// help (see the top of this file).
func (r *fetchRun) takeUpstream(now time.Time) (batch []*runObj, help bool) {
	r.retry = slices.DeleteFunc(r.retry, func(o *runObj) bool {
		if o.state != objPending {
			return true
		}
		if len(batch) < upstreamRequestObjects && !r.heldElsewhere(o) {
			batch = take(batch, o)
			return true
		}
		return false
	})
	for r.ownNext < len(r.own) && len(batch) < upstreamRequestObjects {
		// What a peer holds is left to that peer.
		if o := r.own[r.ownNext]; o.state == objPending && !r.heldElsewhere(o) {
			batch = take(batch, o)
		}
		r.ownNext++
	}
	if len(batch) > 0 || r.helping > 0 || r.ownNext < len(r.own) {
		return batch, false
	}
	batch = r.takeHelp(now)
	if len(batch) > 0 {
		r.s.log.Debug("helping with a share", "owner", batch[0].owner, "objects", len(batch))
	}
	return batch, true
}

// takeHelp picks, from the far end of the other shares, pending objects no
// healthy peer holds whose owner makes no progress.
func (r *fetchRun) takeHelp(now time.Time) []*runObj {
	var batch []*runObj
	r.others = slices.DeleteFunc(r.others, func(o *runObj) bool {
		if o.state == objDone {
			return true
		}
		if len(batch) < helpRequestObjects && o.state == objPending && r.stuck(o.owner, now) && !r.heldElsewhere(o) {
			batch = take(batch, o)
		}
		return false
	})
	return batch
}

// stuck reports whether the syncing node name makes no progress with its
// share: failing, gone, or no object of its share stored for helpStall.
func (r *fetchRun) stuck(name string, now time.Time) bool {
	c := r.cursors[name]
	return c == nil || !c.ok || now.Sub(c.lastOwn) > helpStall
}

// launch sends one request for batch (taken: in flight) to src.
func (r *fetchRun) launch(ctx context.Context, src source, batch []*runObj, help bool) {
	r.inflight++
	if help {
		r.helping++
	}
	r.s.mu.Lock()
	r.s.inflight[src.name]++
	r.s.mu.Unlock()
	r.s.swarm.requested(src.name, src.kind)
	r.s.log.Debug("content request", "source", src.name, "objects", len(batch), "help", help)
	sc, ok := r.sourceCtx[src.name]
	if !ok {
		sc.ctx, sc.cancel = context.WithCancel(ctx)
		r.sourceCtx[src.name] = sc
	}
	ctx = sc.ctx
	go func() {
		res := r.request(ctx, src, batch)
		res.help = help
		r.results <- res
	}()
}

// request asks src for batch and hands each object to the caller's fn as it
// arrives. Content the caller rejects ends the request: the source is bad.
func (r *fetchRun) request(ctx context.Context, src source, batch []*runObj) reqResult {
	res := reqResult{name: src.name, kind: src.kind, batch: batch, delivered: make([]bool, len(batch))}
	hashes := make([]Hash, len(batch))
	pos := make(map[Hash]int, len(batch))
	for i, o := range batch {
		hashes[i] = o.hash
		pos[o.hash] = i
	}
	res.err = src.src.Objects(ctx, hashes, func(h Hash, size int64, rd io.Reader) error {
		i, ok := pos[h]
		if !ok || res.delivered[i] {
			return fmt.Errorf("%w: object %s not asked, or sent twice", ErrFrame, h)
		}
		err := r.fn(h, size, rd)
		switch {
		case err == nil:
			res.delivered[i] = true
			r.s.swarm.delivered(src.name, src.kind, size)
			r.lastGood.Store(time.Now().UnixNano())
		case errors.Is(err, errContentMismatch):
			return &badSourceError{err}
		}
		return err
	})
	return res
}

// badSourceError ends a request whose source sent content that is not what
// its hash says.
type badSourceError struct{ err error }

func (e *badSourceError) Error() string { return "bad content: " + e.err.Error() }
func (e *badSourceError) Unwrap() error { return e.err }

// complete takes a finished request back: what arrived is done, the rest
// goes back to be asked again, and the source's health is updated.
func (r *fetchRun) complete(res reqResult) {
	r.inflight--
	if res.help {
		r.helping--
	}
	r.s.mu.Lock()
	r.s.inflight[res.name]--
	r.s.mu.Unlock()
	for i, o := range res.batch {
		switch {
		case res.delivered[i]:
			o.state = objDone
			r.left--
		case o.state == objInFlight:
			o.state = objPending
			r.retry = append(r.retry, o)
		}
	}
	err := res.err
	r.s.log.Debug("content request done", "source", res.name, "objects", len(res.batch), "left", r.left, "err", err)
	var bad *badSourceError
	switch {
	case err == nil:
		r.s.swarm.succeeded(res.name)
	case isDiskError(err):
		r.fatal = firstError(r.fatal, err)
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
	case errors.As(err, &bad) || errors.Is(err, ErrFrame):
		r.lastError = fmt.Errorf("%s: %w", res.name, err)
		r.s.swarm.ban(res.name, res.kind, err)
	case errors.Is(err, ErrBusy):
		r.s.swarm.busy(res.name, res.kind, err)
	default:
		r.lastError = fmt.Errorf("%s: %w", res.name, err)
		r.s.swarm.failed(res.name, res.kind, err)
	}
}

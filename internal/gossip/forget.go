package gossip

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// A member gone for good (a scale-in deleted its VM) is forgotten on
// request, like `serf force-leave -prune`: every agent drops it from its
// list at once, instead of listing it dead or left, and rejoining it, for
// Timing.Reap. The request is a forget intent that travels like a leave
// intent and lives like a member record:
//
//   - It is sent to every live member directly and by gossip, which every
//     receiver passes on once, and it rides in every push/pull and in the
//     state file; so an agent that was down or cut off when it was issued
//     learns it at its first state exchange after it is back, and no agent
//     ever brings the member back from its own state file.
//   - It names the life it forgets twice over. By the member's metadata
//     version as the requesting node holds it, which the member set itself
//     (Unix milliseconds, increasing across its restarts), so agents agree
//     on it whatever their clocks: a record of that version or an older
//     one is dropped, even one that stopped being alive a moment after the
//     request (failure detection does not end everywhere at once). And by
//     the request's time: a record that stopped being alive before it is
//     dropped too, whatever its version (an agent that missed the member's
//     last metadata update holds an older one, the requesting node may
//     hold a newer one). A later life (the name started again after the
//     request) is a member as usual.
//   - memberlist decides who is alive: a member it reports alive is listed
//     whatever was forgotten, and Forget refuses a member alive here. A
//     forgotten life seen alive again (the forget was wrong) is listed
//     while alive, and dropped again when it stops.
//   - It is kept for Timing.Reap after the request: by then every agent
//     has reaped the records it covers anyway (a member is reaped that
//     long after it was last seen alive), so forget intents do not pile up
//     over years of autoscaling.

var (
	// ErrUnknownMember is returned by Forget for a name this node does not
	// list.
	ErrUnknownMember = errors.New("gossip: unknown member")
	// ErrMemberAlive is returned by Forget for a member alive now, and for
	// this node itself.
	ErrMemberAlive = errors.New("gossip: member is alive")
)

// msgForget is a forget intent.
const msgForget byte = 'f'

// maxForgetSkew bounds how far in the future (by this node's clock) a
// forget intent may have been made: one from a node whose clock runs far
// ahead would otherwise be kept, and forget lives started after it, until
// that time plus Timing.Reap. It is dropped instead: nothing is forgotten.
const maxForgetSkew = 5 * time.Minute

// forgetMsg is the intent to forget a member's life.
type forgetMsg struct {
	Node  string `json:"n"`
	Clock uint64 `json:"c"` // Lamport clock of the request
	// Version is the forgotten life's metadata version: records with this
	// version or an older one are dropped.
	Version int64 `json:"v,omitempty"`
	// At is when the request was made (the requesting node's clock):
	// records last seen alive before it are dropped; the intent is kept
	// for Timing.Reap after it.
	At time.Time `json:"t"`
	By string    `json:"b,omitempty"` // the node that was asked
}

func forgetName(node string) string { return "f/" + node }

// covers reports whether f forgets a record not alive, of metadata
// version, last seen alive at lastSeen.
func (f forgetMsg) covers(version int64, lastSeen time.Time) bool {
	return f.coversLife(version) || !lastSeen.After(f.At)
}

// coversLife reports whether f forgets the life whose metadata has version.
func (f forgetMsg) coversLife(version int64) bool { return version <= f.Version }

// newer reports whether f should replace old: a later request (a forget
// covers every life before it).
func (f forgetMsg) newer(old forgetMsg) bool {
	if f.Clock != old.Clock {
		return f.Clock > old.Clock
	}
	return f.By > old.By
}

// Forget drops member name, which must not be alive, from this node's list
// and from every other agent's: it returns the member as it was listed. It
// refuses this node itself and a member alive now (ErrMemberAlive), and a
// name this node does not list (ErrUnknownMember).
func (g *Gossip) Forget(name string) (Member, error) {
	g.mu.Lock()
	if err := g.usableLocked(); err != nil {
		g.mu.Unlock()
		return Member{}, err
	}
	g.reapLocked(time.Now())
	r, ok := g.members[name]
	switch {
	case name == g.cfg.Name:
		g.mu.Unlock()
		return Member{}, fmt.Errorf("%w: %s is this node", ErrMemberAlive, name)
	case !ok:
		g.mu.Unlock()
		return Member{}, fmt.Errorf("%w: %s", ErrUnknownMember, name)
	case r.State == StateAlive:
		g.mu.Unlock()
		return Member{}, fmt.Errorf("%w: %s", ErrMemberAlive, name)
	}
	was := r.Member
	f := forgetMsg{Node: name, Clock: g.clock + 1, Version: r.version, At: time.Now(), By: g.cfg.Name}
	msg, err := encodeMsg(msgForget, f)
	if err != nil {
		g.mu.Unlock()
		return Member{}, fmt.Errorf("gossip: forget %s: %w", name, err)
	}
	g.clock = f.Clock
	g.gen++ // the state file keeps the clock
	g.forgetLocked(f)
	g.mu.Unlock()

	g.queue.QueueBroadcast(newBroadcast(forgetName(name), msg, nil))
	g.fanOut(msg)
	return was, g.persist(false)
}

// handleForget applies a forget intent received from another node and
// passes it on when it was news.
func (g *Gossip) handleForget(msg []byte) {
	var f forgetMsg
	if err := json.Unmarshal(msg[1:], &f); err != nil || f.Node == "" {
		g.log.Warn("gossip: dropped bad forget message", "err", err)
		return
	}
	g.mu.Lock()
	news := g.forgetLocked(f)
	g.mu.Unlock()
	if news {
		g.queue.QueueBroadcast(newBroadcast(forgetName(f.Node), msg, nil))
	}
}

// forgetLocked records forget intent f, drops the record it covers, and
// reports whether f was news here.
func (g *Gossip) forgetLocked(f forgetMsg) bool {
	switch age := time.Since(f.At); {
	case f.Clock >= maxClock || f.Node == g.cfg.Name || age > g.timing.Reap:
		return false
	case age < -maxForgetSkew:
		g.log.Warn("gossip: dropped a forget intent made in the future (clock skew?)", "member", f.Node, "by", f.By, "at", f.At)
		return false
	}
	g.clock = max(g.clock, f.Clock)
	if old, ok := g.forgets[f.Node]; ok && !f.newer(old) {
		return false
	}
	g.forgets[f.Node] = f
	g.memberGen++
	g.signalPersist()
	if r, ok := g.members[f.Node]; ok && r.State != StateAlive && f.covers(r.version, r.Since) {
		g.dropForgottenLocked(r, f)
	}
	return true
}

// dropForgottenLocked removes the record r of a forgotten life.
func (g *Gossip) dropForgottenLocked(r *memberRec, f forgetMsg) {
	delete(g.members, r.Name)
	delete(g.leaves, r.Name)
	delete(g.repairs, r.Name)
	delete(g.returned, r.Name)
	g.memberGen++
	g.signalPersist()
	g.log.Info("gossip member forgotten", "member", r.Name, "addr", r.Addr, "state", r.State,
		"last_seen", r.Since.UTC().Format(time.RFC3339), "by", f.By)
	g.notifyLocked()
}

// forgottenLocked reports whether r, just seen not alive, is a forgotten
// life; if so it is dropped.
func (g *Gossip) forgottenLocked(r *memberRec) bool {
	f, ok := g.forgets[r.Name]
	if !ok || !f.covers(r.version, r.Since) {
		return false
	}
	g.dropForgottenLocked(r, f)
	return true
}

// forgetListLocked returns the forget intents, for push/pull and the state file.
func (g *Gossip) forgetListLocked() []forgetMsg {
	if len(g.forgets) == 0 {
		return nil
	}
	out := make([]forgetMsg, 0, len(g.forgets))
	for _, f := range g.forgets {
		out = append(out, f)
	}
	return out
}

// mergeForgets applies the forget intents of a push/pull and returns those
// that were news here.
func (g *Gossip) mergeForgets(fs []forgetMsg) []forgetMsg {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mergeForgetsLocked(fs)
}

// mergeForgetsLocked applies forget intents (of a push/pull or of the state
// file) and returns those that were news here.
func (g *Gossip) mergeForgetsLocked(fs []forgetMsg) []forgetMsg {
	var news []forgetMsg
	for _, f := range fs {
		if f.Node != "" && g.forgetLocked(f) {
			news = append(news, f)
		}
	}
	return news
}

// reapForgetsLocked drops the forget intents older than Timing.Reap.
func (g *Gossip) reapForgetsLocked(now time.Time) {
	for name, f := range g.forgets {
		if now.Sub(f.At) > g.timing.Reap {
			delete(g.forgets, name)
			g.memberGen++
		}
	}
}

package gossip

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// maxKeyLen bounds register keys.
const maxKeyLen = 128

// maxClock bounds the Lamport clocks a node accepts from others: far above
// any real count of writes, and far enough below the top of uint64 that
// the node's own next write (clock+1) always wins.
const maxClock = 1 << 62

// Register is one cluster-wide value. The last writer wins: the higher
// Clock, ties broken by the higher Node name.
type Register struct {
	Clock uint64          `json:"clock"`
	Node  string          `json:"node"` // the node that wrote it
	Value json.RawMessage `json:"value"`
}

// newer reports whether r wins over old.
func (r Register) newer(old Register) bool {
	if r.Clock != old.Clock {
		return r.Clock > old.Clock
	}
	return r.Node > old.Node
}

func (r Register) valid() bool {
	return r.Node != "" && r.Clock < maxClock && json.Valid(r.Value)
}

func validKey(key string) error {
	if key == "" || len(key) > maxKeyLen {
		return fmt.Errorf("gossip: register key %q: must be 1 to %d bytes", key, maxKeyLen)
	}
	return nil
}

// Get returns the register key, if any node ever set it.
func (g *Gossip) Get(key string) (Register, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.regs[key]
	r.Value = bytes.Clone(r.Value)
	return r, ok
}

// Set writes value (JSON-encoded) to the register key with a clock above any
// seen, sends it to every live member at once and queues it for gossip,
// persists it and notifies subscribers. The encoded
// message must fit in a gossip packet (1 KiB), else ErrTooLarge.
func (g *Gossip) Set(key string, value any) (Register, error) {
	if err := validKey(key); err != nil {
		return Register{}, err
	}
	raw, err := json.Marshal(value)
	if err != nil {
		return Register{}, fmt.Errorf("gossip: encode register %s: %w", key, err)
	}
	g.mu.Lock()
	if err := g.usableLocked(); err != nil {
		g.mu.Unlock()
		return Register{}, err
	}
	r := Register{Clock: g.clock + 1, Node: g.cfg.Name, Value: raw}
	msg, err := encodeRegisterMsg(key, r)
	if err != nil {
		g.mu.Unlock()
		return Register{}, err
	}
	g.clock = r.Clock
	g.regs[key] = r
	g.gen++
	g.notifyLocked()
	g.mu.Unlock()

	g.queue.QueueBroadcast(newBroadcast(registerName(key), msg, nil))
	g.fanOut(msg)
	r.Value = bytes.Clone(r.Value)
	if err := g.persist(false); err != nil {
		return r, err
	}
	return r, nil
}

func (g *Gossip) usableLocked() error {
	switch {
	case g.closed:
		return ErrClosed
	case !g.opened:
		return ErrNotOpen
	}
	return nil
}

// applyRegister merges a register received from another node and reports
// whether it was new here. The Lamport clock follows every register seen.
func (g *Gossip) applyRegister(key string, r Register) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.clock = max(g.clock, r.Clock)
	if cur, ok := g.regs[key]; ok && !r.newer(cur) {
		return false
	}
	g.regs[key] = r
	g.gen++
	g.registerHeard = time.Now()
	g.notifyLocked()
	g.signalPersist()
	return true
}

// state is the full register set: the push/pull payload and the state file.
type state struct {
	Clock     uint64              `json:"clock"`
	Registers map[string]Register `json:"registers"`
	// Push/pull only: the leave intents of left members (clock and, since
	// it was added, meta version; see leaveMsg).
	Left  map[string]uint64 `json:"left,omitempty"`
	LeftV map[string]int64  `json:"left_v,omitempty"`
	// The forget intents (forget.go), in push/pull and the state file.
	Forgotten []forgetMsg `json:"forgotten,omitempty"`
}

func (g *Gossip) localState() []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	left, leftV := g.leftLocked()
	g.reapForgetsLocked(time.Now())
	st := state{Clock: g.clock, Registers: g.regs, Left: left, LeftV: leftV, Forgotten: g.forgetListLocked()}
	b, err := marshalJSON(st)
	if err != nil {
		g.log.Error("gossip: encode local state", "err", err)
		return nil
	}
	return b
}

// mergeState applies a remote node's full register set (push/pull).
func (g *Gossip) mergeState(buf []byte) {
	var st state
	if err := json.Unmarshal(buf, &st); err != nil {
		g.log.Warn("gossip: bad remote state", "err", err)
		return
	}
	for _, f := range g.mergeForgets(st.Forgotten) {
		// Passed on like a register that was new here.
		if msg, err := encodeMsg(msgForget, f); err == nil {
			g.queue.QueueBroadcast(newBroadcast(forgetName(f.Node), msg, nil))
		}
	}
	for key, r := range g.mergeRegisters(st) {
		// Spread what was new here like a register message: a write made
		// while a partition cut its writer off reaches one node by a state
		// exchange after the partition, and every node from there.
		msg, err := encodeRegisterMsg(key, r)
		if err != nil {
			continue
		}
		g.queue.QueueBroadcast(newBroadcast(registerName(key), msg, nil))
	}
}

// mergeRegisters applies st and returns the registers that were new here.
func (g *Gossip) mergeRegisters(st state) map[string]Register {
	g.mu.Lock()
	defer g.mu.Unlock()
	if st.Clock < maxClock {
		g.clock = max(g.clock, st.Clock)
	}
	for node, c := range st.Left {
		g.leaveIntentLocked(leaveMsg{Node: node, Clock: c, Version: st.LeftV[node]})
	}
	changed := make(map[string]Register)
	for key, r := range st.Registers {
		if validKey(key) != nil || !r.valid() {
			continue
		}
		g.clock = max(g.clock, r.Clock)
		if cur, ok := g.regs[key]; ok && !r.newer(cur) {
			continue
		}
		g.regs[key] = r
		changed[key] = r
	}
	if len(changed) > 0 {
		g.gen++
		g.notifyLocked()
		g.signalPersist()
	}
	return changed
}

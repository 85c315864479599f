package gossip

import (
	"bytes"
	"maps"
)

// Hooks for the fuzz targets (fuzz_test.go): what a node decodes from
// others, and its state file.

// HandleMsg applies a user message as memberlist hands it over.
func (g *Gossip) HandleMsg(msg []byte) { g.handleMsg(bytes.Clone(msg)) }

// MergeState applies a push/pull payload.
func (g *Gossip) MergeState(buf []byte) { g.mergeState(buf) }

// LocalState is this node's push/pull payload.
func (g *Gossip) LocalState() []byte { return g.localState() }

// Registers returns a copy of every register.
func (g *Gossip) Registers() map[string]Register {
	g.mu.Lock()
	defer g.mu.Unlock()
	return maps.Clone(g.regs)
}

// StateFileBytes is what persist writes to the state file.
func (g *Gossip) StateFileBytes() ([]byte, error) {
	g.mu.Lock()
	st := stateFile{state: state{Clock: g.clock, Registers: maps.Clone(g.regs), Forgotten: g.forgetListLocked()}}
	g.mu.Unlock()
	return encodeStateFile(st)
}

// LoadStateFile reads a state file as Open does.
func LoadStateFile(path string) (map[string]Register, error) {
	st, err := loadState(path)
	return st.Registers, err
}

// MaxClock bounds the Lamport clock a node accepts from others.
const MaxClock = maxClock

// DecodeKeyring parses a keyring file as LoadKeyring does.
func DecodeKeyring(b []byte) ([][]byte, string, error) { return decodeKeyring(b) }

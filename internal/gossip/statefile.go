package gossip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"time"

	"github.com/nodeagent/nodeagent/internal/durable"
)

// stateFile is what the state file holds: the registers and the Lamport
// clock, and the members this node has seen (snapshot.go).
type stateFile struct {
	state
	Members []snapshotMember `json:"members,omitempty"`
}

// persistMark is what the last write of the state file covered.
type persistMark struct{ gen, memberGen uint64 }

// snapshotRefresh is how often the state file is rewritten while members
// are alive, so that their last-seen times survive a crash within it.
const snapshotRefresh = time.Minute

// loadState reads the state file; a missing file is an empty state.
func loadState(path string) (stateFile, error) {
	st := stateFile{state: state{Registers: map[string]Register{}}}
	if path == "" {
		return st, nil
	}
	// A kill during a write (it happens every membership change) leaves
	// the temporary copy behind.
	if err := durable.RemoveLeftovers(path); err != nil {
		return st, fmt.Errorf("gossip: state file leftovers: %w", err)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("gossip: read state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("gossip: read state %s: %w", path, err)
	}
	if st.Registers == nil {
		st.Registers = map[string]Register{}
	}
	for key, r := range st.Registers {
		if validKey(key) != nil || !r.valid() {
			return st, fmt.Errorf("gossip: read state %s: bad register %q", path, key)
		}
	}
	for _, m := range st.Members {
		if m.Name == "" || m.Addr == "" {
			return st, fmt.Errorf("gossip: read state %s: member without a name or address", path)
		}
	}
	return st, nil
}

// signalPersist asks runPersist to write the state file. Callers may hold mu.
func (g *Gossip) signalPersist() {
	select {
	case g.persistCh <- struct{}{}:
	default:
	}
}

// runPersist writes the state file after changes received from the
// cluster, off memberlist's packet loop, and every snapshotRefresh.
func (g *Gossip) runPersist(ctx context.Context) {
	refresh := time.NewTicker(snapshotRefresh)
	defer refresh.Stop()
	for {
		force := false
		select {
		case <-ctx.Done():
			return
		case <-g.persistCh:
		case <-refresh.C:
			force = true
		}
		if err := g.persist(force); err != nil {
			g.log.Error("gossip: persist state", "err", err)
		}
	}
}

// persist writes the registers and the members to the state file unless
// a write already covered their current generations and force is false.
func (g *Gossip) persist(force bool) error {
	if g.cfg.StateFile == "" {
		return nil
	}
	g.persistMu.Lock()
	defer g.persistMu.Unlock()
	g.mu.Lock()
	g.reapLocked(time.Now())
	mark := persistMark{gen: g.gen, memberGen: g.memberGen}
	st := stateFile{
		state:   state{Clock: g.clock, Registers: maps.Clone(g.regs), Forgotten: g.forgetListLocked()},
		Members: g.snapshotLocked(time.Now()),
	}
	g.mu.Unlock()
	if mark == g.persisted && !force {
		return nil
	}
	b, err := encodeStateFile(st)
	if err != nil {
		return fmt.Errorf("gossip: encode state: %w", err)
	}
	if err := writeFileAtomic(g.cfg.StateFile, b); err != nil {
		return fmt.Errorf("gossip: write state: %w", err)
	}
	g.persisted = mark
	return nil
}

// encodeStateFile is the content of a state file: st in JSON, one line.
func encodeStateFile(st stateFile) ([]byte, error) {
	b, err := marshalJSON(st)
	return append(b, '\n'), err
}

// writeFileAtomic replaces path with data durably (see package durable),
// creating its directory first.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return durable.WriteFile(path, data, 0o600)
}

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

	"github.com/nodeagent/nodeagent/internal/durable"
)

// loadState reads the state file; a missing file is an empty state.
func loadState(path string) (state, error) {
	st := state{Registers: map[string]Register{}}
	if path == "" {
		return st, nil
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
	for key, r := range st.Registers {
		if validKey(key) != nil || !r.valid() {
			return st, fmt.Errorf("gossip: read state %s: bad register %q", path, key)
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
// cluster, off memberlist's packet loop.
func (g *Gossip) runPersist(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.persistCh:
			if err := g.persist(); err != nil {
				g.log.Error("gossip: persist state", "err", err)
			}
		}
	}
}

// persist writes the registers to the state file unless a write already
// covered the current generation.
func (g *Gossip) persist() error {
	if g.cfg.StateFile == "" {
		return nil
	}
	g.persistMu.Lock()
	defer g.persistMu.Unlock()
	g.mu.Lock()
	gen := g.gen
	st := state{Clock: g.clock, Registers: maps.Clone(g.regs)}
	g.mu.Unlock()
	if gen == g.persistedGen {
		return nil
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("gossip: encode state: %w", err)
	}
	if err := writeFileAtomic(g.cfg.StateFile, append(b, '\n')); err != nil {
		return fmt.Errorf("gossip: write state: %w", err)
	}
	g.persistedGen = gen
	return nil
}

// writeFileAtomic replaces path with data durably (see package durable),
// creating its directory first.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return durable.WriteFile(path, data, 0o600)
}

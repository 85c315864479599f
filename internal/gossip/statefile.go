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

// writeFileAtomic replaces path with data durably: temporary file in the
// same directory, fsync, rename, fsync of the directory.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

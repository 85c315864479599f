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
	mark := persistMark{gen: g.gen, memberGen: g.memberGen}
	st := stateFile{
		state:   state{Clock: g.clock, Registers: maps.Clone(g.regs)},
		Members: g.snapshotLocked(time.Now()),
	}
	g.mu.Unlock()
	if mark == g.persisted && !force {
		return nil
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("gossip: encode state: %w", err)
	}
	if err := writeFileAtomic(g.cfg.StateFile, append(b, '\n')); err != nil {
		return fmt.Errorf("gossip: write state: %w", err)
	}
	g.persisted = mark
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

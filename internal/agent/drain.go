package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nodeagent/nodeagent/internal/durable"
)

// drainState is persisted in data_dir/drain.json.
type drainState struct {
	Drained bool      `json:"drained"`
	Since   time.Time `json:"since"`
}

func (a *Agent) drainFile() string { return filepath.Join(a.cfg.DataDir, "drain.json") }

// loadDrain reads the persisted drain flag (absent file: not drained).
func (a *Agent) loadDrain() error {
	b, err := os.ReadFile(a.drainFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st drainState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("%s: %w", a.drainFile(), err)
	}
	a.mu.Lock()
	a.drained = st.Drained
	a.mu.Unlock()
	return nil
}

// SetDrain implements api.Node: persist, then announce.
func (a *Agent) SetDrain(drained bool) error {
	b, _ := json.Marshal(drainState{Drained: drained, Since: time.Now().UTC()})
	if err := os.MkdirAll(a.cfg.DataDir, 0o755); err != nil {
		return err
	}
	if err := durable.WriteFile(a.drainFile(), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("persist drain: %w", err)
	}
	a.mu.Lock()
	a.drained = drained
	a.mu.Unlock()
	a.log.Info("drain", "drained", drained)
	a.announce()
	return nil
}

func (a *Agent) isDrained() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.drained
}

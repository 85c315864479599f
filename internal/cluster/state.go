package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nodeagent/nodeagent/internal/errs"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

// Register keys: part of the wire format.
const (
	keyTarget      = "target"
	keyMaintenance = "maintenance"
	keyCertificate = "certificate"
	keyAllowPrefix = "allow/" // + node name
)

// Registers is where the state lives: *gossip.Gossip.
type Registers interface {
	Get(key string) (gossip.Register, bool)
	Set(key string, value any) (gossip.Register, error)
}

var _ Registers = (*gossip.Gossip)(nil)

// State reads and writes the cluster state. It holds no copy of it: every
// read decodes the register, so it is always what gossip has now.
type State struct {
	regs Registers
	log  *slog.Logger

	mu     sync.Mutex
	warned map[string]uint64 // key -> clock of a malformed value already logged
}

// New returns the state kept in regs.
func New(regs Registers, log *slog.Logger) *State {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &State{regs: regs, log: log, warned: map[string]uint64{}}
}

// get decodes the register key into v; false when it was never set or
// does not decode (logged once per value).
func (s *State) get(key string, v any) (gossip.Register, bool) {
	reg, ok := s.regs.Get(key)
	if !ok {
		return reg, false
	}
	if err := json.Unmarshal(reg.Value, v); err != nil {
		s.malformed(key, reg, err)
		return reg, false
	}
	return reg, true
}

func (s *State) malformed(key string, reg gossip.Register, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.warned[key] == reg.Clock {
		return
	}
	s.warned[key] = reg.Clock
	s.log.Warn("ignoring malformed cluster state", "key", key, "clock", reg.Clock, "set_by", reg.Node, "err", err)
}

// set writes v to the register key; a value too large for a gossip message
// is the caller's mistake.
func (s *State) set(key string, v any) (gossip.Register, error) {
	reg, err := s.regs.Set(key, v)
	if errors.Is(err, gossip.ErrTooLarge) {
		return reg, errs.Invalid("%s: too large for a gossip message (shorten the message or the allow list)", key)
	}
	if err != nil {
		return reg, fmt.Errorf("set %s: %w", key, err)
	}
	return reg, nil
}

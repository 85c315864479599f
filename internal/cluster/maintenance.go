package cluster

import (
	"net/netip"
	"time"

	"github.com/nodeagent/nodeagent/internal/errs"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

// Maintenance is the cluster-wide maintenance state. It has two levels,
// because Moodle has two (see the README):
//   - site maintenance (Enabled): each web node's edge answers clients
//     outside the allow list with the maintenance page; allowed clients
//     reach a working Moodle;
//   - the Moodle hold (Moodle): the controller writes Moodle's own
//     climaintenance.html, so Moodle answers 503 to everyone and its cron
//     stops, as admin/cli/maintenance.php --enable does.
//
// Until, when set, ends both.
type Maintenance struct {
	Enabled bool
	Moodle  bool
	// Message is shown on the maintenance pages.
	Message string
	// Reason says why it is on (e.g. a deploy); shown to operators, never
	// on the public page.
	Reason string
	Allow  []string // CIDRs let through at the edge, besides maintenance.allow
	Until  time.Time
	// Clock and SetBy are the register's, filled when read.
	Clock uint64
	SetBy string
}

// Limits that keep the register within a gossip message.
const (
	MaxMessage = 500
	MaxReason  = 200
	MaxAllow   = 32
)

// maxUntil is the latest end the register can carry: it is written in UTC,
// and JSON times end with year 9999.
var maxUntil = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)

// Active reports whether site maintenance is in force at now.
func (m Maintenance) Active(now time.Time) bool { return m.Enabled && m.before(now) }

// MoodleHeld reports whether the Moodle hold is in force at now.
func (m Maintenance) MoodleHeld(now time.Time) bool { return m.Moodle && m.before(now) }

func (m Maintenance) before(now time.Time) bool { return m.Until.IsZero() || now.Before(m.Until) }

// InForce returns m while its until has not passed, and the state with
// both levels off once it has: what to change when writing a new state.
func (m Maintenance) InForce(now time.Time) Maintenance {
	if !m.before(now) {
		return Maintenance{}
	}
	return m
}

// Validate refuses what an operator may get wrong: an ErrInvalid naming
// the field.
func (m Maintenance) Validate(now time.Time) error {
	if len(m.Message) > MaxMessage {
		return errs.Invalid("message: at most %d bytes", MaxMessage)
	}
	if len(m.Reason) > MaxReason {
		return errs.Invalid("reason: at most %d bytes", MaxReason)
	}
	if len(m.Allow) > MaxAllow {
		return errs.Invalid("allow: at most %d ranges", MaxAllow)
	}
	for i, c := range m.Allow {
		if _, err := netip.ParsePrefix(c); err != nil {
			return errs.Invalid("allow[%d]: invalid CIDR %q", i, c)
		}
	}
	if !m.Until.IsZero() && !m.Until.After(now) {
		return errs.Invalid("until %s is in the past", m.Until.Format(time.RFC3339))
	}
	if m.Until.After(maxUntil) {
		return errs.Invalid("until %s is after the end of year 9999 UTC", m.Until.Format(time.RFC3339))
	}
	return nil
}

// maintenanceWire is the maintenance register's value. Agents before this
// package decoded it into their API type, whose JSON names these are;
// "active" was always written false and is kept so that a state those
// agents could express encodes to the same bytes. Moodle and Reason are
// new: older agents ignore them.
type maintenanceWire struct {
	Enabled bool       `json:"enabled"`
	Message string     `json:"message,omitempty"`
	Allow   []string   `json:"allow,omitempty"`
	Until   *time.Time `json:"until,omitempty"`
	Active  bool       `json:"active"`
	Moodle  bool       `json:"moodle,omitempty"`
	Reason  string     `json:"reason,omitempty"`
}

// Maintenance returns the cluster's maintenance state (off when never set).
func (s *State) Maintenance() Maintenance {
	var w maintenanceWire
	reg, ok := s.get(keyMaintenance, &w)
	if !ok {
		return Maintenance{}
	}
	return w.state(reg)
}

// state is the Maintenance a register holds.
func (w maintenanceWire) state(reg gossip.Register) Maintenance {
	m := Maintenance{Enabled: w.Enabled, Moodle: w.Moodle, Message: w.Message, Reason: w.Reason,
		Allow: w.Allow, Clock: reg.Clock, SetBy: reg.Node}
	if w.Until != nil {
		// Another node may have written an end late in year 9999 west of
		// UTC: in force as far as can be written again, in UTC.
		m.Until = *w.Until
		if m.Until.After(maxUntil) {
			m.Until = maxUntil
		}
	}
	return m
}

// SetMaintenance writes m (last writer wins by the gossip clock) and
// returns it as stored. A state with neither level on is written empty.
func (s *State) SetMaintenance(m Maintenance) (Maintenance, error) {
	w := maintenanceWire{Enabled: m.Enabled, Moodle: m.Moodle, Message: m.Message, Reason: m.Reason, Allow: m.Allow}
	if !m.Until.IsZero() {
		until := m.Until.UTC()
		w.Until = &until
	}
	if !m.Enabled && !m.Moodle {
		w = maintenanceWire{}
	}
	reg, err := s.set(keyMaintenance, w)
	if err != nil {
		return Maintenance{}, err
	}
	return w.state(reg), nil
}

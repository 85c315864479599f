package agent

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/certs"
	"github.com/nodeagent/nodeagent/internal/edge"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

// The values of the cluster registers another member may have written
// (maintenance, certificate), decoded without side effects so that the
// checks live in one place and are fuzzed (registers_fuzz_test.go).

// decodeMaintenance reads the maintenance register as it stands at now. A
// value that does not decode is an error: the caller applies no
// maintenance.
func decodeMaintenance(reg gossip.Register, now time.Time) (api.Maintenance, error) {
	var m api.Maintenance
	if err := json.Unmarshal(reg.Value, &m); err != nil {
		return api.Maintenance{}, fmt.Errorf("maintenance register: %w", err)
	}
	m.Clock = reg.Clock
	m.SetBy = reg.Node
	m.Active = m.Enabled && (m.Until == nil || now.Before(*m.Until))
	return m, nil
}

// edgeMaintenance is m as the edge applies it, letting through the
// register's allow list plus the configured one (maintenance.allow, which
// the config has checked). A range of the register that does not parse is
// left out alone and named in the error: the configured ranges always
// apply, so an operator is never locked out by someone else's typo.
func edgeMaintenance(m api.Maintenance, configured []string) (edge.Maintenance, error) {
	em := edge.Maintenance{Active: m.Active, Message: m.Message}
	if m.Until != nil {
		em.Until = *m.Until
	}
	var bad []string
	for _, c := range slices.Concat(m.Allow, configured) {
		p, err := edge.ParsePrefixes([]string{c})
		if err != nil {
			bad = append(bad, c)
			continue
		}
		em.Allow = append(em.Allow, p...)
	}
	if len(bad) > 0 {
		return em, fmt.Errorf("maintenance allow list: invalid CIDRs %q left out", bad)
	}
	return em, nil
}

// decodeCertificate reads the certificate register: the certificate a node
// announced it obtained or renewed in the cluster storage.
func decodeCertificate(reg gossip.Register) (certs.Obtained, error) {
	var ob certs.Obtained
	if err := json.Unmarshal(reg.Value, &ob); err != nil {
		return certs.Obtained{}, fmt.Errorf("certificate register: %w", err)
	}
	return ob, nil
}

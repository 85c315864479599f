package agent_test

import (
	"encoding/json"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/agent"
	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

// Fuzz targets of the register values another member may write. They test
// the decode functions where they are today (internal/agent/registers.go);
// they move with the typed cluster state. Seeds are in testdata/fuzz.

var fuzzNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// FuzzMaintenanceRegister: any value of the maintenance register is either
// no maintenance or a state that is active only when enabled and not yet
// over, that the edge applies with the configured allow list always in
// force, and that survives being written again.
func FuzzMaintenanceRegister(f *testing.F) {
	f.Add([]byte(`{"enabled":true,"message":"upgrade <b>now</b>","allow":["10.0.0.0/8"],"until":"2030-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"enabled":true,"until":"2001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"enabled":false}`))
	f.Add([]byte(`null`))
	configured := []string{"198.51.100.0/24", "2001:db8::/32"}
	f.Fuzz(func(t *testing.T, value []byte) {
		m, err := agent.DecodeMaintenance(gossip.Register{Clock: 5, Node: "web-1", Value: value}, fuzzNow)
		if err != nil {
			if m.Active || m.Enabled {
				t.Fatalf("a value that does not decode is maintenance: %+v", m)
			}
			return
		}
		if m.Active != (m.Enabled && (m.Until == nil || fuzzNow.Before(*m.Until))) || m.Clock != 5 || m.SetBy != "web-1" {
			t.Fatalf("state %+v does not follow the register", m)
		}
		em, _ := agent.EdgeMaintenance(m, configured)
		if em.Active != m.Active || em.Message != m.Message {
			t.Fatalf("the edge applies %+v for %+v", em, m)
		}
		for _, c := range configured {
			if !slices.Contains(em.Allow, netip.MustParsePrefix(c)) {
				t.Fatalf("configured range %s not let through (allow %v from %q)", c, em.Allow, m.Allow)
			}
		}
		again, err := json.Marshal(api.Maintenance{Enabled: m.Enabled, Message: m.Message, Allow: m.Allow, Until: m.Until})
		if err != nil {
			t.Fatalf("the state cannot be written again: %v", err)
		}
		m2, err := agent.DecodeMaintenance(gossip.Register{Clock: 5, Node: "web-1", Value: again}, fuzzNow)
		if err != nil || m2.Enabled != m.Enabled || m2.Message != m.Message || !slices.Equal(m2.Allow, m.Allow) ||
			(m2.Until == nil) != (m.Until == nil) || m.Until != nil && !m2.Until.Equal(*m.Until) {
			t.Fatalf("written again, %+v reads as %+v (%v)", m, m2, err)
		}
	})
}

// FuzzCertificateRegister: any value of the certificate register is
// either refused or an announcement that survives being written again.
func FuzzCertificateRegister(f *testing.F) {
	f.Add([]byte(`{"names":["moodle.example.com"],"fingerprint":"ab12","not_after":"2030-01-01T00:00:00Z","renewal":true}`))
	f.Add([]byte(`{"names":null,"not_after":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"not_after":"9999-12-31T23:59:59.999999999+14:00"}`))
	f.Fuzz(func(t *testing.T, value []byte) {
		ob, err := agent.DecodeCertificate(gossip.Register{Clock: 1, Node: "web-2", Value: value})
		if err != nil {
			return
		}
		again, err := json.Marshal(ob)
		if err != nil {
			t.Fatalf("the announcement cannot be written again: %v", err)
		}
		ob2, err := agent.DecodeCertificate(gossip.Register{Clock: 1, Node: "web-2", Value: again})
		if err != nil || !slices.Equal(ob2.Names, ob.Names) || ob2.Fingerprint != ob.Fingerprint ||
			!ob2.NotAfter.Equal(ob.NotAfter) || ob2.Renewal != ob.Renewal {
			t.Fatalf("written again, %+v reads as %+v (%v)", ob, ob2, err)
		}
	})
}

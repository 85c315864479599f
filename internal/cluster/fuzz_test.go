package cluster_test

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/cluster"
)

// Fuzz targets of the register values another member may write: whatever
// arrives is either refused (no state) or a state this node can act on
// and write again. Seeds, among them the inputs of bugs found, are in
// testdata/fuzz/<target>.

var fuzzNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// FuzzMaintenanceRegister: any value of the maintenance register is either
// no maintenance or a state that is in force only when enabled and not yet
// over, whose allow list the edge takes with the configured ranges always
// in force, and that, while in force, survives being written again.
func FuzzMaintenanceRegister(f *testing.F) {
	f.Add([]byte(`{"enabled":true,"message":"upgrade <b>now</b>","allow":["10.0.0.0/8"],"until":"2030-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"enabled":true,"until":"2001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"enabled":false,"moodle":true,"reason":"deploy 7"}`))
	f.Add([]byte(`{"enabled":false}`))
	f.Add([]byte(`null`))
	configured := []string{"198.51.100.0/24", "2001:db8::/32"}
	f.Fuzz(func(t *testing.T, value []byte) {
		regs := newRegisters()
		regs.put("maintenance", "web-1", 5, string(value))
		s := cluster.New(regs, nil)
		m := s.Maintenance()
		if m.Clock != 5 {
			if !reflect.DeepEqual(m, cluster.Maintenance{}) {
				t.Fatalf("a value that does not decode is maintenance: %+v", m)
			}
			return
		}
		if m.SetBy != "web-1" {
			t.Fatalf("set by %q, want the register's node", m.SetBy)
		}
		over := !m.Until.IsZero() && !fuzzNow.Before(m.Until)
		if m.Active(fuzzNow) && (!m.Enabled || over) || m.MoodleHeld(fuzzNow) && (!m.Moodle || over) {
			t.Fatalf("in force at %s: %+v", fuzzNow, m)
		}
		checkAllow(t, m.Allow, configured)
		in := m.InForce(fuzzNow)
		if _, err := s.SetMaintenance(in); err != nil {
			t.Fatalf("the state in force %+v cannot be written again: %v", in, err)
		}
		back := s.Maintenance()
		if !in.Enabled && !in.Moodle {
			in = cluster.Maintenance{} // written empty
		}
		if back.Enabled != in.Enabled || back.Moodle != in.Moodle || back.Message != in.Message ||
			back.Reason != in.Reason || !slices.Equal(back.Allow, in.Allow) || !back.Until.Equal(in.Until) {
			t.Fatalf("written again, %+v reads as %+v", in, back)
		}
	})
}

// checkAllow: the edge's allow list from a register's list and the
// configured ranges holds every configured range, and every entry is
// either taken or named as invalid.
func checkAllow(t *testing.T, register, configured []string) {
	t.Helper()
	allow, invalid := cluster.ParseAllow(register, configured)
	for _, c := range configured {
		if !slices.Contains(allow, netip.MustParsePrefix(c)) {
			t.Fatalf("configured range %s not let through (allow %v from %q)", c, allow, register)
		}
	}
	if len(allow)+len(invalid) != len(register)+len(configured) {
		t.Fatalf("from %q and %q: allow %v, invalid %q", register, configured, allow, invalid)
	}
}

// FuzzCertificateRegister: any value of the certificate register is
// either refused or an announcement that survives being announced again.
func FuzzCertificateRegister(f *testing.F) {
	f.Add([]byte(`{"names":["moodle.example.com"],"fingerprint":"ab12","not_after":"2030-01-01T00:00:00Z","renewal":true}`))
	f.Add([]byte(`{"names":null,"not_after":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"not_after":"9999-12-31T23:59:59.999999999+14:00"}`))
	f.Fuzz(func(t *testing.T, value []byte) {
		regs := newRegisters()
		regs.put("certificate", "web-2", 1, string(value))
		s := cluster.New(regs, nil)
		c, ok := s.Certificate()
		if !ok {
			return
		}
		if c.Clock != 1 || c.Node != "web-2" {
			t.Fatalf("announcement %+v does not follow the register", c)
		}
		if _, err := s.AnnounceCertificate(c); err != nil {
			t.Fatalf("the announcement %+v cannot be made again: %v", c, err)
		}
		back, ok := s.Certificate()
		names := c.Names[:min(len(c.Names), cluster.MaxCertificateNames)]
		if !ok || !slices.Equal(back.Names, names) || back.Fingerprint != c.Fingerprint ||
			!back.NotAfter.Equal(c.NotAfter) || back.Renewal != c.Renewal {
			t.Fatalf("announced again, %+v reads as %+v (%v)", c, back, ok)
		}
	})
}

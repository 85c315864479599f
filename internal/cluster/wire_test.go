package cluster_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/cluster"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

// registers is an in-memory register store, as gossip keeps them.
type registers struct {
	regs  map[string]gossip.Register
	clock uint64
}

func newRegisters() *registers { return &registers{regs: map[string]gossip.Register{}} }

func (r *registers) Get(key string) (gossip.Register, bool) {
	reg, ok := r.regs[key]
	return reg, ok
}

func (r *registers) Set(key string, v any) (gossip.Register, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return gossip.Register{}, err
	}
	r.clock++
	reg := gossip.Register{Clock: r.clock, Node: "n1", Value: b}
	r.regs[key] = reg
	return reg, nil
}

// put stores raw as another node would have sent it.
func (r *registers) put(key, node string, clock uint64, raw string) {
	r.regs[key] = gossip.Register{Clock: clock, Node: node, Value: json.RawMessage(raw)}
}

// Register values exactly as agents before the cluster package encoded
// them (json.Marshal of api.RevRef, api.Maintenance and certs.Obtained).
const (
	oldTarget          = `{"seq":6,"id":"3f4a9c0d5e6b7a8190a1b2c3d4e5f60718293a4b5c6d7e8f9012345678abcdef"}`
	oldMaintenanceOn   = `{"enabled":true,"message":"Upgrading to 4.5 \u003csoon\u003e","allow":["10.0.0.0/8","192.0.2.7/32"],"until":"2026-12-04T22:30:00Z","active":false}`
	oldMaintenanceOff  = `{"enabled":false,"active":false}`
	oldCertificate     = `{"names":["moodle.example.com"],"fingerprint":"9a0b","not_after":"2026-12-04T22:30:00Z","renewal":true}`
	oldTargetID        = "3f4a9c0d5e6b7a8190a1b2c3d4e5f60718293a4b5c6d7e8f9012345678abcdef"
	oldMaintenanceNode = "web-2"
)

var until = time.Date(2026, 12, 4, 22, 30, 0, 0, time.UTC)

// TestDecodesTodaysRegisters: a rolling upgrade finds registers written by
// the previous version (in gossip and in every agent's state file).
func TestDecodesTodaysRegisters(t *testing.T) {
	regs := newRegisters()
	regs.put("target", "controller", 41, oldTarget)
	regs.put("maintenance", oldMaintenanceNode, 42, oldMaintenanceOn)
	regs.put("certificate", "web-1", 43, oldCertificate)
	s := cluster.New(regs, nil)

	if got, ok := s.Target(); !ok || got != (cluster.Target{Seq: 6, ID: oldTargetID, SetBy: "controller"}) {
		t.Errorf("target %+v %v", got, ok)
	}
	want := cluster.Maintenance{Enabled: true, Message: "Upgrading to 4.5 <soon>", Allow: []string{"10.0.0.0/8", "192.0.2.7/32"},
		Until: until, Clock: 42, SetBy: oldMaintenanceNode}
	if got := s.Maintenance(); !reflect.DeepEqual(got, want) {
		t.Errorf("maintenance\n got %+v\nwant %+v", got, want)
	}
	if m := s.Maintenance(); !m.Active(until.Add(-time.Second)) || m.Active(until) || m.MoodleHeld(until.Add(-time.Second)) {
		t.Error("an old maintenance state: active before until only, and no Moodle hold")
	}
	cert, ok := s.Certificate()
	if !ok || !reflect.DeepEqual(cert, cluster.Certificate{Names: []string{"moodle.example.com"}, Fingerprint: "9a0b",
		NotAfter: until, Renewal: true, Clock: 43, Node: "web-1"}) {
		t.Errorf("certificate %+v %v", cert, ok)
	}
	regs.put("maintenance", oldMaintenanceNode, 44, oldMaintenanceOff)
	if m := s.Maintenance(); m.Enabled || m.Moodle || m.Clock != 44 {
		t.Errorf("maintenance off: %+v", m)
	}
}

// TestEncodesTodaysRegisters: what the previous version could express is
// written with the same bytes, so its agents read it unchanged.
func TestEncodesTodaysRegisters(t *testing.T) {
	regs := newRegisters()
	s := cluster.New(regs, nil)
	if err := s.SetTarget(cluster.Target{Seq: 6, ID: oldTargetID}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetMaintenance(cluster.Maintenance{Enabled: true, Message: "Upgrading to 4.5 <soon>",
		Allow: []string{"10.0.0.0/8", "192.0.2.7/32"}, Until: until}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AnnounceCertificate(cluster.Certificate{Names: []string{"moodle.example.com"}, Fingerprint: "9a0b",
		NotAfter: until, Renewal: true}); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"target": oldTarget, "maintenance": oldMaintenanceOn, "certificate": oldCertificate} {
		if got := string(regs.regs[key].Value); got != want {
			t.Errorf("%s:\n got %s\nwant %s", key, got, want)
		}
	}
	if _, err := s.SetMaintenance(cluster.Maintenance{Message: "ignored when off"}); err != nil {
		t.Fatal(err)
	}
	if got := string(regs.regs["maintenance"].Value); got != oldMaintenanceOff {
		t.Errorf("maintenance off: %s, want %s", got, oldMaintenanceOff)
	}
}

// oldMaintenance is the type agents before the cluster package decoded the
// maintenance register into (api.Maintenance of that version).
type oldMaintenance struct {
	Enabled bool       `json:"enabled"`
	Message string     `json:"message,omitempty"`
	Allow   []string   `json:"allow,omitempty"`
	Until   *time.Time `json:"until,omitempty"`
	Clock   uint64     `json:"clock,omitzero"`
	SetBy   string     `json:"set_by,omitempty"`
	Active  bool       `json:"active"`
}

// TestOldAgentsReadNewFields: a state with the new fields (the Moodle
// hold, a reason) still reads as site maintenance to an older agent.
func TestOldAgentsReadNewFields(t *testing.T) {
	regs := newRegisters()
	s := cluster.New(regs, nil)
	if _, err := s.SetMaintenance(cluster.Maintenance{Enabled: true, Moodle: true, Message: "m", Reason: "deploy x"}); err != nil {
		t.Fatal(err)
	}
	var old oldMaintenance
	if err := json.Unmarshal(regs.regs["maintenance"].Value, &old); err != nil || !old.Enabled || old.Message != "m" {
		t.Fatalf("an older agent reads %+v (%v)", old, err)
	}
}

func TestMalformedValueIgnored(t *testing.T) {
	regs := newRegisters()
	regs.put("target", "controller", 3, `{"seq":"six"}`)
	regs.put("maintenance", "web-1", 4, `[1,2]`)
	s := cluster.New(regs, nil)
	if _, ok := s.Target(); ok {
		t.Error("a malformed target was used")
	}
	if m := s.Maintenance(); m.Enabled || m.Clock != 0 {
		t.Errorf("a malformed maintenance state was used: %+v", m)
	}
}

func TestMaintenanceValidate(t *testing.T) {
	now := time.Now()
	for name, m := range map[string]cluster.Maintenance{
		"bad CIDR":       {Enabled: true, Allow: []string{"10.0.0/8"}},
		"past":           {Enabled: true, Until: now.Add(-time.Minute)},
		"too long":       {Enabled: true, Message: string(make([]byte, cluster.MaxMessage+1))},
		"too many":       {Enabled: true, Allow: make([]string, cluster.MaxAllow+1)},
		"after 9999 UTC": {Enabled: true, Until: time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("", -14*3600))},
	} {
		if err := m.Validate(now); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := (cluster.Maintenance{Enabled: true, Allow: []string{"10.0.0.0/8", "2001:db8::/32"}, Until: now.Add(time.Hour)}).Validate(now); err != nil {
		t.Error(err)
	}
}

// TestAllowLists: each node announces its maintenance.allow; the union of
// the nodes asked for is what counts, and a list changed or emptied in a
// config replaces the old one.
func TestAllowLists(t *testing.T) {
	regs := newRegisters()
	s := cluster.New(regs, nil)
	if err := s.SetAllow("web-1", nil); err != nil || len(regs.regs) != 0 {
		t.Fatalf("a node without the key wrote %v (%v)", regs.regs, err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.SetAllow("controller", []string{"10.0.0.0/8", "192.0.2.0/24"}))
	must(s.SetAllow("web-1", []string{"10.0.0.0/8"}))
	must(s.SetAllow("gone", []string{"203.0.113.0/24"}))
	clock := regs.clock
	must(s.SetAllow("web-1", []string{"10.0.0.0/8"}))
	if regs.clock != clock {
		t.Error("an unchanged list was written again")
	}
	if got := s.Allow([]string{"controller", "web-1", "web-2"}); !reflect.DeepEqual(got, []string{"10.0.0.0/8", "192.0.2.0/24"}) {
		t.Errorf("union %v", got)
	}
	must(s.SetAllow("controller", nil))
	if got := s.Allow([]string{"controller", "web-1"}); !reflect.DeepEqual(got, []string{"10.0.0.0/8"}) {
		t.Errorf("after the controller emptied its list: %v", got)
	}
}

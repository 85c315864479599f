package certs

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"time"
)

// State describes the certificate a node serves (GET /v1/certificates).
type State struct {
	Source      string    `json:"source"` // manual | acme | self-signed
	Names       []string  `json:"names"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Fingerprint string    `json:"fingerprint"` // hex SHA-256 of the DER leaf
	Serial      string    `json:"serial"`      // hex
	Issuer      string    `json:"issuer"`
	// Pending is true while ACME has no certificate yet and the
	// self-signed one is served instead.
	Pending       bool       `json:"pending,omitempty"`
	LoadedAt      time.Time  `json:"loaded_at"`
	LastError     string     `json:"last_error,omitempty"`
	LastErrorTime *time.Time `json:"last_error_time,omitempty"`
}

// describe fills the certificate fields of st from leaf.
func describe(st *State, leaf *x509.Certificate) {
	if leaf == nil {
		return
	}
	sum := sha256.Sum256(leaf.Raw)
	st.Names = certNames(leaf)
	st.NotBefore, st.NotAfter = leaf.NotBefore, leaf.NotAfter
	st.Fingerprint = hex.EncodeToString(sum[:])
	st.Serial = leaf.SerialNumber.Text(16)
	st.Issuer = leaf.Issuer.String()
}

func certNames(leaf *x509.Certificate) []string {
	names := append([]string(nil), leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && leaf.Subject.CommonName != "" {
		names = append(names, leaf.Subject.CommonName)
	}
	return names
}

// State reports the certificate served to a handshake for the first name,
// and the last error of the source.
func (m *Manager) State() State {
	st := State{Source: m.source}
	var served *tls.Certificate
	if m.acme != nil {
		served = m.acme.current()
		st.Pending = served == nil
	}
	if served == nil {
		served = m.cert.Load()
	}
	if served != nil {
		describe(&st, served.Leaf)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st.LoadedAt = m.loaded
	if m.lastErr != nil {
		st.LastError = m.lastErr.Error()
		t := m.errTime
		st.LastErrorTime = &t
	}
	return st
}

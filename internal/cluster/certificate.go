package cluster

import "time"

// Certificate is the last certificate a node obtained or renewed in the
// cluster's ACME storage: a version signal, so the others reload it.
type Certificate struct {
	Names       []string
	Fingerprint string
	NotAfter    time.Time
	Renewal     bool
	// Clock and Node are the register's, filled when read.
	Clock uint64
	Node  string
}

// maxCertificateNames keeps the register small: it only signals.
const maxCertificateNames = 3

// certificateWire is the certificate register's value.
type certificateWire struct {
	Names       []string  `json:"names"`
	Fingerprint string    `json:"fingerprint"`
	NotAfter    time.Time `json:"not_after"`
	Renewal     bool      `json:"renewal"`
}

// Certificate returns the last announcement; false when none was made.
func (s *State) Certificate() (Certificate, bool) {
	var w certificateWire
	reg, ok := s.get(keyCertificate, &w)
	if !ok {
		return Certificate{}, false
	}
	return Certificate{Names: w.Names, Fingerprint: w.Fingerprint, NotAfter: w.NotAfter, Renewal: w.Renewal,
		Clock: reg.Clock, Node: reg.Node}, true
}

// AnnounceCertificate records c as the cluster's newest certificate and
// returns the register clock it was written with.
func (s *State) AnnounceCertificate(c Certificate) (uint64, error) {
	names := c.Names
	if len(names) > maxCertificateNames {
		names = names[:maxCertificateNames]
	}
	reg, err := s.set(keyCertificate, certificateWire{Names: names, Fingerprint: c.Fingerprint, NotAfter: c.NotAfter, Renewal: c.Renewal})
	if err != nil {
		return 0, err
	}
	return reg.Clock, nil
}

package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nodeagent/nodeagent/internal/durable"
)

// Self-signed certificates live a year and are replaced a month before
// they end, or when the configured names change.
const (
	selfSignedLifetime = 365 * 24 * time.Hour
	selfSignedRenew    = 30 * 24 * time.Hour
)

func (m *Manager) selfSignedPaths() (string, string) {
	return filepath.Join(m.cfg.Dir, "self-signed.crt"), filepath.Join(m.cfg.Dir, "self-signed.key")
}

// loadSelfSigned serves the persisted self-signed pair, making a new one
// when there is none usable for the names.
func (m *Manager) loadSelfSigned() error {
	certFile, keyFile := m.selfSignedPaths()
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err == nil && slices.Equal(certNames(c.Leaf), selfSignedNames(m.names())) &&
		time.Until(c.Leaf.NotAfter) > selfSignedRenew {
		m.serve(&c)
		return nil
	}
	nc, err := m.makeSelfSigned(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("self-signed certificate in %s: %w", m.cfg.Dir, err)
	}
	m.log.Info("self-signed certificate created", "names", certNames(nc.Leaf), "file", certFile)
	m.serve(nc)
	return nil
}

// selfSignedNames are the SANs of the self-signed certificate, in the
// order certNames reports them: DNS names, then loopback addresses.
func selfSignedNames(names []string) []string {
	out := slices.Clone(names)
	return append(out, "127.0.0.1", "::1")
}

func (m *Manager) makeSelfSigned(certFile, keyFile string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	names := m.names()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0], Organization: []string{"nodeagent self-signed"}},
		DNSNames:              names,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := os.MkdirAll(m.cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	// The key first: a crash in between leaves a pair that does not match,
	// which the next start replaces.
	if err := durable.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := durable.WriteFile(certFile, certPEM, 0o644); err != nil {
		return nil, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

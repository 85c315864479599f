// Package clustertls gives agents a TLS identity for agent-to-agent traffic
// on the cluster API, derived from the gossip key every member already holds.
//
// The gossip key (32 secret bytes) deterministically yields a cluster CA
// key; each agent issues itself a short-lived leaf certificate from it at
// start. Servers present that leaf and verify client certificates when given;
// clients verify the server against the derived CA. So only holders of the
// gossip key — the same trust boundary as the encrypted gossip — can read
// manifests and content (which include config.php). It owns no listener and
// touches no files.
package clustertls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"time"
)

// ServerName is the DNS name in every agent certificate; clients verify it
// instead of the peer's address, which changes with autoscaling.
const ServerName = "nodeagent.cluster"

// Identity is one agent's view of the cluster PKI.
type Identity struct {
	pool *x509.CertPool
	leaf tls.Certificate
}

// New derives the cluster CA from key and issues a leaf certificate for this
// agent, valid from an hour ago for leafLifetime.
func New(key []byte, node string) (*Identity, error) {
	if len(key) != 32 {
		return nil, errors.New("cluster identity: gossip key must be 32 bytes")
	}
	caKey, err := deriveCAKey(key)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "nodeagent cluster CA"},
		NotBefore:             time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
		SubjectKeyId:          keyID(&caKey.PublicKey),
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	leaf, err := issueLeaf(caCert, caKey, node)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &Identity{pool: pool, leaf: leaf}, nil
}

const leafLifetime = 10 * 365 * 24 * time.Hour

func issueLeaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, node string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: node},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(leafLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{ServerName},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("cluster leaf certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// deriveCAKey turns the gossip key into a P-256 private scalar with HKDF.
// A derived value outside the curve order (probability ~2^-32) is retried
// with the next counter.
func deriveCAKey(key []byte) (*ecdsa.PrivateKey, error) {
	for i := 0; i < 16; i++ {
		d, err := hkdf.Key(sha256.New, key, []byte("nodeagent"), fmt.Sprintf("cluster-ca-v1/%d", i), 32)
		if err != nil {
			return nil, err
		}
		if k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d); err == nil {
			return k, nil
		}
	}
	return nil, errors.New("cluster identity: cannot derive a CA key")
}

func keyID(pub *ecdsa.PublicKey) []byte {
	b, _ := pub.Bytes()
	sum := sha256.Sum256(b)
	return sum[:20]
}

// ServerConfig is the TLS config of the cluster API listener: it presents the
// leaf and verifies client certificates when clients send one (load
// balancers probing /readyz send none; agent endpoints require one, see
// Verified).
func (id *Identity) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{id.leaf},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    id.pool,
		NextProtos:   []string{"h2", "http/1.1"},
	}
}

// ClientConfig is the TLS config for calls to other agents.
func (id *Identity) ClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{id.leaf},
		RootCAs:      id.pool,
		ServerName:   ServerName,
	}
}

// HTTPClient returns a client for agent-to-agent calls. Its transport keeps
// connections to each peer alive; timeouts bound connection set-up only, as
// content downloads may run long.
func (id *Identity) HTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = id.ClientConfig()
	tr.ForceAttemptHTTP2 = true
	tr.TLSHandshakeTimeout = 10 * time.Second
	tr.ResponseHeaderTimeout = 60 * time.Second
	tr.MaxIdleConnsPerHost = 4
	return &http.Client{Transport: tr}
}

// Verified reports whether a request came with a client certificate issued
// by the cluster CA (the TLS stack has already checked the chain).
func Verified(r *http.Request) bool {
	return r.TLS != nil && len(r.TLS.VerifiedChains) > 0
}

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
	"time"
)

// authority is the CA of one gossip key.
type authority struct {
	name string // the key's name (Key.Name)
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// keyID is the CA's subject key id: a hash of its public key, so the same
// on every agent holding the gossip key.
func (a *authority) keyID() string { return string(a.cert.SubjectKeyId) }

// deriveCA turns a gossip key into its cluster CA. Every agent derives the
// same key pair; the self-signed certificate differs only in its signature.
func deriveCA(k Key) (*authority, error) {
	if len(k.Secret) != 32 {
		return nil, errors.New("cluster identity: gossip key must be 32 bytes")
	}
	caKey, err := deriveCAKey(k.Secret)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "nodeagent cluster CA"},
		NotBefore:             time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
		SubjectKeyId:          keyID(&caKey.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	return &authority{name: k.Name, cert: cert, key: caKey}, nil
}

// issueLeaf issues this agent's certificate, for both ends of a connection.
func issueLeaf(ca *authority, node string, notBefore, notAfter time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: node},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{ServerName},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("cluster leaf certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("cluster leaf certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
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

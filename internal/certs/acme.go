package certs

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/certmagic"
)

// Obtained describes a certificate this node obtained or renewed and
// stored, for the agent to announce.
type Obtained struct {
	Names       []string  `json:"names"`
	Fingerprint string    `json:"fingerprint"`
	NotAfter    time.Time `json:"not_after"`
	Renewal     bool      `json:"renewal"`
}

// acmeSource manages certificates with certmagic in the shared storage.
type acmeSource struct {
	m      *Manager
	cache  *certmagic.Cache
	cfg    *certmagic.Config
	issuer *certmagic.ACMEIssuer
}

func (s *acmeSource) open(ctx context.Context) error {
	a := s.m.cfg.ACME
	if a.Storage == nil {
		return errors.New("edge.acme: no certificate storage")
	}
	if a.Email == "" {
		// certmagic would ask on stdin.
		return errors.New("edge.acme.email: required for ACME")
	}
	var roots *x509.CertPool
	if len(a.CARoot) > 0 {
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(a.CARoot) {
			return errors.New("edge.acme.ca_root: no PEM certificate in the file")
		}
	}
	zl := zapLogger(s.m.log)
	s.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return s.cfg, nil },
		RenewCheckInterval: a.RenewCheckInterval,
		Logger:             zl,
	})
	cfg := certmagic.Config{
		Storage:            a.Storage,
		Logger:             zl,
		OnEvent:            s.onEvent,
		RenewalWindowRatio: a.RenewalWindowRatio,
		DisableARI:         a.DisableARI,
		DefaultServerName:  s.m.cfg.Domains[0],
	}
	// Let's Encrypt ended OCSP in 2025; stapling only logs errors.
	cfg.OCSP.DisableStapling = true
	s.cfg = certmagic.New(s.cache, cfg)
	s.issuer = certmagic.NewACMEIssuer(s.cfg, certmagic.ACMEIssuer{
		CA:                   a.CA,
		TrustedRoots:         roots,
		Email:                a.Email,
		Agreed:               true,
		AltHTTPPort:          a.HTTPPort,
		AltTLSALPNPort:       a.TLSPort,
		ListenHost:           a.ListenHost,
		DisableHTTPChallenge: a.HTTPPort == 0,
		Logger:               zl,
	})
	s.cfg.Issuers = []certmagic.Issuer{s.issuer}
	s.m.goRun(s.manage)
	return nil
}

// Back-off between attempts to take a certificate under management.
const (
	manageRetryMin = 10 * time.Second
	manageRetryMax = 10 * time.Minute
)

// manage takes the domains under certmagic's management: load from the
// shared storage, or obtain (one node orders, the others wait on the
// storage lock and then load). A failed attempt (CA unreachable, storage
// unreachable, validation failed) is retried with back-off until it
// works; from then on certmagic renews.
func (s *acmeSource) manage(ctx context.Context) {
	wait := manageRetryMin
	for {
		err := s.cfg.ManageSync(ctx, s.m.cfg.Domains)
		if err == nil || ctx.Err() != nil {
			return
		}
		s.m.setErr(err)
		s.m.log.Error("certificate not obtained; retrying", "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, manageRetryMax)
	}
}

func (s *acmeSource) close() {
	s.cache.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	certmagic.CleanUpOwnLocks(ctx, zapLogger(s.m.log))
}

// onEvent follows certmagic: errors into State, obtained certificates to
// the agent.
func (s *acmeSource) onEvent(ctx context.Context, event string, data map[string]any) error {
	switch event {
	case "cert_obtained":
		s.m.setErr(nil)
		s.m.touch()
		renewal, _ := data["renewal"].(bool)
		key, _ := data["certificate_path"].(string)
		s.m.log.Info("certificate obtained", "identifier", data["identifier"], "renewal", renewal)
		if s.m.cfg.OnObtained != nil {
			s.announce(ctx, key, renewal)
		}
	case "cert_failed":
		err, _ := data["error"].(error)
		if err == nil {
			err = fmt.Errorf("%v", data["error"])
		}
		s.m.setErr(fmt.Errorf("obtain %v: %w", data["identifier"], err))
	case "cached_managed_cert":
		s.m.setErr(nil)
		s.m.touch()
	}
	return nil
}

// announce reads the new certificate back from storage and hands it to
// OnObtained (synchronously, in certmagic's job).
func (s *acmeSource) announce(ctx context.Context, key string, renewal bool) {
	ob := Obtained{Renewal: renewal}
	if b, err := s.cfg.Storage.Load(ctx, key); err == nil {
		if blk, _ := pem.Decode(b); blk != nil {
			if leaf, err := x509.ParseCertificate(blk.Bytes); err == nil {
				sum := sha256.Sum256(leaf.Raw)
				ob.Names, ob.NotAfter, ob.Fingerprint = certNames(leaf), leaf.NotAfter, hex.EncodeToString(sum[:])
			}
		}
	}
	s.m.cfg.OnObtained(ob)
}

func isACMEChallenge(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == "acme-tls/1"
}

// served is the managed certificate for a handshake; names it has none for
// get the first domain's (a probe by IP, a stray Host). It is nil when
// there is none yet (or certmagic fails), so the caller falls back to the
// self-signed certificate.
func (s *acmeSource) served(hello *tls.ClientHelloInfo) *tls.Certificate {
	if hello.ServerName == "" || len(s.cache.AllMatchingCertificates(hello.ServerName)) == 0 {
		if len(s.cache.AllMatchingCertificates(s.m.cfg.Domains[0])) == 0 {
			return nil
		}
		h := *hello
		h.ServerName = s.m.cfg.Domains[0]
		hello = &h
	}
	c, err := s.cfg.GetCertificate(hello)
	if err != nil || c == nil || len(c.Certificate) == 0 {
		return nil
	}
	return c
}

// current is the certificate served for the first domain, nil if none.
func (s *acmeSource) current() *tls.Certificate {
	var best *tls.Certificate
	for _, c := range s.cache.AllMatchingCertificates(s.m.cfg.Domains[0]) {
		if c.Leaf != nil && (best == nil || c.Leaf.NotAfter.After(best.Leaf.NotAfter)) {
			tc := c.Certificate
			tc.Leaf = c.Leaf
			best = &tc
		}
	}
	return best
}

// reload loads every domain's certificate from storage and drops the ones
// it replaces from the cache (certmagic's own replacement call deadlocks in
// v0.25.6).
func (s *acmeSource) reload(ctx context.Context) error {
	var errs []error
	for _, d := range s.m.cfg.Domains {
		nc, err := s.cfg.CacheManagedCertificate(ctx, d)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d, err))
			continue
		}
		var old []string
		for _, c := range s.cache.AllMatchingCertificates(d) {
			if c.Hash() != nc.Hash() {
				old = append(old, c.Hash())
			}
		}
		if len(old) > 0 {
			s.cache.Remove(old)
			s.m.log.Info("certificate reloaded from storage", "identifier", d, "not_after", nc.Leaf.NotAfter)
		}
	}
	return errors.Join(errs...)
}

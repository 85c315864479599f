package certs

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"time"
)

// manualSource serves edge.cert_file/edge.key_file and polls them: when
// their content changed (compared by hash, so a rename-replace, an in-place
// rewrite and a copy within the same second all count), the pair is loaded
// if it parses and matches; otherwise the old pair stays served. A failing
// pair is reported once it has stayed the same for one poll, so a copy
// caught half-written, or a certificate written before its key, is retried
// quietly.
type manualSource struct {
	m        *Manager
	seen     [2]fileSum // the files as last loaded or tried
	failed   error      // the last attempt's error, not yet reported
	reported bool
}

// fileSum identifies a file's content (or why it could not be read).
type fileSum struct {
	sum [sha256.Size]byte
	err string
}

// maxPEM bounds what is read of a certificate or key file.
const maxPEM = 1 << 20

func sumFile(name string) fileSum {
	f, err := os.Open(name)
	if err != nil {
		return fileSum{err: err.Error()}
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, maxPEM)); err != nil {
		return fileSum{err: err.Error()}
	}
	var fs fileSum
	h.Sum(fs.sum[:0])
	return fs
}

func (s *manualSource) ids() [2]fileSum {
	return [2]fileSum{sumFile(s.m.cfg.CertFile), sumFile(s.m.cfg.KeyFile)}
}

// open loads the pair at start: an error names the key.
func (s *manualSource) open() error {
	s.seen = s.ids()
	c, err := loadPair(s.m.cfg.CertFile, s.m.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("edge.cert_file, edge.key_file: %w", err)
	}
	s.m.serve(c)
	return nil
}

// watch polls the files until ctx ends.
func (s *manualSource) watch(ctx context.Context) {
	t := time.NewTicker(s.m.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ids := s.ids()
		if ids != s.seen {
			s.seen = ids
			s.failed = s.tryLoad()
			s.reported = false
			continue
		}
		if s.failed != nil && !s.reported {
			s.report(s.failed)
			s.reported = true
		}
	}
}

// reload loads the pair now (SIGHUP, the API); an error is reported at once.
func (s *manualSource) reload() error {
	err := s.tryLoad()
	if err != nil {
		s.report(err)
	}
	return err
}

// tryLoad loads and serves the pair if it is valid.
func (s *manualSource) tryLoad() error {
	c, err := loadPair(s.m.cfg.CertFile, s.m.cfg.KeyFile)
	if err != nil {
		return err
	}
	old := s.m.cert.Load()
	s.m.serve(c)
	s.m.setErr(nil)
	if old == nil || old.Leaf == nil || !old.Leaf.Equal(c.Leaf) {
		s.m.log.Info("certificate loaded", "file", s.m.cfg.CertFile, "names", certNames(c.Leaf),
			"serial", c.Leaf.SerialNumber.Text(16), "not_after", c.Leaf.NotAfter)
	}
	return nil
}

func (s *manualSource) report(err error) {
	err = fmt.Errorf("%s: %w (still serving the previous certificate)", s.m.cfg.CertFile, err)
	s.m.setErr(err)
	s.m.log.Error("certificate refused", "err", err)
}

// loadPair reads a certificate chain and its key: they must parse, match,
// and the certificate must not have expired.
func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if time.Now().After(c.Leaf.NotAfter) {
		return nil, fmt.Errorf("certificate expired at %s", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &c, nil
}

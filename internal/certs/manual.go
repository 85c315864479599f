package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"syscall"
	"time"
)

// manualSource serves edge.cert_file/edge.key_file and polls them: a pair
// that changed (size, mtime or inode, so editors' rename-replace counts) is
// loaded when it parses and matches; otherwise the old pair stays served.
// A failing pair is reported once it has stayed the same for one poll, so a
// copy caught half-written, or a certificate written before its key, is
// retried quietly.
type manualSource struct {
	m        *Manager
	seen     [2]fileID // the files as last loaded or tried
	failed   error     // the last attempt's error, not yet reported
	reported bool
}

type fileID struct {
	size  int64
	mtime time.Time
	ino   uint64
	err   string
}

func statID(name string) fileID {
	fi, err := os.Stat(name)
	if err != nil {
		return fileID{err: err.Error()}
	}
	id := fileID{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.ino = st.Ino
	}
	return id
}

func (s *manualSource) ids() [2]fileID {
	return [2]fileID{statID(s.m.cfg.CertFile), statID(s.m.cfg.KeyFile)}
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

package certs_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/certs"
	"github.com/nodeagent/nodeagent/internal/certs/certstest"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// TestManualReplace replaces the files of a served pair: new handshakes get
// the new serial while an open HTTP/2 connection keeps working; then an
// invalid pair is refused, the old one stays served and the error shows.
func TestManualReplace(t *testing.T) {
	ca := certstest.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "nginx.crt"), filepath.Join(dir, "nginx.key")
	c1, k1 := ca.Leaf(t, "moodle.test", 1001)
	certstest.ReplaceFile(t, certFile, c1)
	certstest.ReplaceFile(t, keyFile, k1)

	m := certs.New(certs.Config{Dir: filepath.Join(dir, "state"), CertFile: certFile, KeyFile: keyFile, PollInterval: 100 * time.Millisecond})
	if err := m.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ln := listen(t)
	serveTLS(t, ln, m.TLSConfig(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}))
	addr := ln.Addr().String()
	url := "https://" + addr + "/"

	// One HTTP/2 connection, opened before the replacement.
	tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "moodle.test", RootCAs: ca.Pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	get := func() (serial int64, reused bool) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
		}))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if string(body) != "HTTP/2.0" {
			t.Fatalf("protocol %q, want HTTP/2.0", body)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64(), reused
	}
	if s, _ := get(); s != 1001 {
		t.Fatalf("serial %d, want 1001", s)
	}
	if st := m.State(); st.Source != certs.SourceManual || st.Serial != fmt.Sprintf("%x", 1001) || st.Names[0] != "moodle.test" {
		t.Fatalf("state %+v", st)
	}

	c2, k2 := ca.Leaf(t, "moodle.test", 1002)
	certstest.ReplaceFile(t, keyFile, k2) // the key first: for a moment the pair does not match
	certstest.ReplaceFile(t, certFile, c2)
	start := time.Now()
	testutil.Eventually(t, 10*time.Second, func() error {
		leaf, err := handshake(addr, "moodle.test", ca.Pool)
		if err != nil {
			return err
		}
		if leaf.SerialNumber.Int64() != 1002 {
			return fmt.Errorf("serial %d", leaf.SerialNumber.Int64())
		}
		return nil
	})
	t.Logf("new certificate served %s after the replacement", time.Since(start).Round(time.Millisecond))
	if s, reused := get(); !reused || s != 1001 {
		t.Fatalf("open connection: reused %v serial %d, want the same connection with 1001", reused, s)
	}
	if st := m.State(); st.LastError != "" {
		t.Fatalf("error after a valid replacement: %s", st.LastError)
	}

	// A mismatched pair (a new certificate with the old key).
	c3, _ := ca.Leaf(t, "moodle.test", 1003)
	certstest.ReplaceFile(t, certFile, c3)
	testutil.Eventually(t, 10*time.Second, func() error {
		if st := m.State(); st.LastError == "" {
			return errors.New("no error reported")
		}
		return nil
	})
	st := m.State()
	if !strings.Contains(st.LastError, "private key does not match") || st.Serial != fmt.Sprintf("%x", 1002) {
		t.Fatalf("state after a bad pair: %+v", st)
	}
	if leaf, err := handshake(addr, "moodle.test", ca.Pool); err != nil || leaf.SerialNumber.Int64() != 1002 {
		t.Fatalf("after a bad pair: %v %v", leaf, err)
	}
	if err := m.Reload(context.Background()); err == nil {
		t.Fatal("Reload of a bad pair: no error")
	}
	// Garbage is refused the same way.
	certstest.ReplaceFile(t, certFile, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n"))
	if err := m.Reload(context.Background()); err == nil {
		t.Fatal("Reload of garbage: no error")
	}
	if leaf, err := handshake(addr, "moodle.test", ca.Pool); err != nil || leaf.SerialNumber.Int64() != 1002 {
		t.Fatalf("after garbage: %v %v", leaf, err)
	}
}

func TestManualBadPairAtStart(t *testing.T) {
	ca := certstest.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	c1, _ := ca.Leaf(t, "moodle.test", 1)
	_, k2 := ca.Leaf(t, "moodle.test", 2)
	certstest.ReplaceFile(t, certFile, c1)
	certstest.ReplaceFile(t, keyFile, k2)
	m := certs.New(certs.Config{Dir: dir, CertFile: certFile, KeyFile: keyFile})
	err := m.Open(context.Background())
	if err == nil || !strings.Contains(err.Error(), "edge.cert_file") {
		t.Fatalf("Open: %v, want an error naming edge.cert_file", err)
	}
	m.Close()
	os.Remove(keyFile)
	m = certs.New(certs.Config{Dir: dir, CertFile: certFile, KeyFile: keyFile})
	if err := m.Open(context.Background()); err == nil || !strings.Contains(err.Error(), "edge.cert_file") {
		t.Fatalf("Open with a missing key: %v", err)
	}
	m.Close()
}

// TestSelfSigned: without files or ACME the node serves a self-signed
// certificate for its names, the same one after a restart.
func TestSelfSigned(t *testing.T) {
	dir := t.TempDir()
	open := func(domains ...string) *certs.Manager {
		m := certs.New(certs.Config{Dir: dir, Domains: domains, Node: "web-1"})
		if err := m.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	m := open()
	st := m.State()
	if st.Source != certs.SourceSelfSigned || st.Names[0] != "web-1" || st.Fingerprint == "" || time.Until(st.NotAfter) < 300*24*time.Hour {
		t.Fatalf("state %+v", st)
	}
	if again := open().State(); again.Fingerprint != st.Fingerprint {
		t.Fatalf("restart made a new certificate: %s != %s", again.Fingerprint, st.Fingerprint)
	}
	other := open("moodle.test").State()
	if other.Fingerprint == st.Fingerprint || other.Names[0] != "moodle.test" {
		t.Fatalf("new names kept the old certificate: %+v", other)
	}
	// Served to a handshake without SNI too.
	ln := listen(t)
	m = open("moodle.test")
	serveTLS(t, ln, m.TLSConfig(), http.NotFoundHandler())
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.ConnectionState().PeerCertificates[0].DNSNames[0]; got != "moodle.test" {
		t.Fatalf("served %q", got)
	}
}

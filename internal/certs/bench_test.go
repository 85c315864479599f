package certs_test

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/certs"
	"github.com/nodeagent/nodeagent/internal/certs/certstest"
)

// handshakes runs full TLS handshakes (no session resumption) against a
// server with cfg, on 2 client goroutines, b.N in all.
func handshakes(b *testing.B, cfg *tls.Config, roots *certstest.CA) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	cfg = cfg.Clone()
	cfg.SessionTicketsDisabled = true
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(c, cfg)
				tc.Handshake()
				tc.Close()
			}()
		}
	}()
	client := &tls.Config{ServerName: "moodle.test", RootCAs: roots.Pool}
	b.ResetTimer()
	var wg sync.WaitGroup
	var next sync.Mutex
	n := 0
	for range 2 {
		wg.Go(func() {
			for {
				next.Lock()
				if n >= b.N {
					next.Unlock()
					return
				}
				n++
				next.Unlock()
				c, err := tls.Dial("tcp", ln.Addr().String(), client)
				if err != nil {
					b.Error(err)
					return
				}
				c.Close()
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
}

// BenchmarkHandshake compares full TLS handshakes served by the manager's
// per-handshake certificate choice (manual files) with a static
// tls.Config.Certificates (the anchor: what a server with a fixed
// certificate does).
func BenchmarkHandshake(b *testing.B) {
	ca := certstest.NewCA(b)
	dir := b.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	c1, k1 := ca.Leaf(b, "moodle.test", 7)
	certstest.ReplaceFile(b, certFile, c1)
	certstest.ReplaceFile(b, keyFile, k1)
	pair, err := tls.X509KeyPair(c1, k1)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("static", func(b *testing.B) {
		handshakes(b, &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: []string{"h2", "http/1.1"}}, ca)
	})
	b.Run("manual", func(b *testing.B) {
		m := certs.New(certs.Config{Dir: dir, CertFile: certFile, KeyFile: keyFile})
		if err := m.Open(context.Background()); err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		handshakes(b, m.TLSConfig(), ca)
	})
}

// BenchmarkManualReplace measures how long a replaced pair takes to reach
// new handshakes (the 500 ms poll bounds it). Each replacement comes at a
// random point of the poll period, as a real one would.
func BenchmarkManualReplace(b *testing.B) {
	ca := certstest.NewCA(b)
	dir := b.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	c1, k1 := ca.Leaf(b, "moodle.test", 1)
	certstest.ReplaceFile(b, certFile, c1)
	certstest.ReplaceFile(b, keyFile, k1)
	m := certs.New(certs.Config{Dir: dir, CertFile: certFile, KeyFile: keyFile})
	if err := m.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler(), TLSConfig: m.TLSConfig(), ErrorLog: log.New(io.Discard, "", 0)}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()
	var total, worst time.Duration
	b.ResetTimer()
	for i := range b.N {
		serial := int64(100 + i)
		c, k := ca.Leaf(b, "moodle.test", serial)
		b.StopTimer()
		time.Sleep(rand.N(500 * time.Millisecond))
		b.StartTimer()
		start := time.Now()
		certstest.ReplaceFile(b, keyFile, k)
		certstest.ReplaceFile(b, certFile, c)
		for {
			leaf, err := handshake(ln.Addr().String(), "moodle.test", ca.Pool)
			if err == nil && leaf.SerialNumber.Int64() == serial {
				break
			}
			if time.Since(start) > 10*time.Second {
				b.Fatalf("serial %d not served after 10s", serial)
			}
			time.Sleep(5 * time.Millisecond)
		}
		d := time.Since(start)
		total += d
		worst = max(worst, d)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-serve/op")
	b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
}

// BenchmarkGetCertificate is the per-handshake cost of choosing the
// certificate (manual source: one atomic load), without the handshake.
func BenchmarkGetCertificate(b *testing.B) {
	ca := certstest.NewCA(b)
	dir := b.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	c1, k1 := ca.Leaf(b, "moodle.test", 7)
	certstest.ReplaceFile(b, certFile, c1)
	certstest.ReplaceFile(b, keyFile, k1)
	m := certs.New(certs.Config{Dir: dir, CertFile: certFile, KeyFile: keyFile})
	if err := m.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	get := m.TLSConfig().GetCertificate
	hello := &tls.ClientHelloInfo{ServerName: "moodle.test", SupportedProtos: []string{"h2", "http/1.1"}}
	for b.Loop() {
		if _, err := get(hello); err != nil {
			b.Fatal(err)
		}
	}
}

package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/nodeagent/nodeagent/internal/edge"
)

// serveEdge runs internal/edge alone, as the agent would (certificate
// through GetCertificate), until SIGTERM or SIGINT.
func serveEdge(args []string) error {
	fs := flag.NewFlagSet("serve-edge", flag.ContinueOnError)
	addr := fs.String("https", "127.0.0.1:8443", "listen address")
	backend := fs.String("backend", "http://127.0.0.1:8080", "backend URL")
	certFile := fs.String("cert", "", "certificate PEM")
	keyFile := fs.String("key", "", "key PEM")
	profile := fs.String("cpuprofile", "", "write a CPU profile here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return err
	}
	u, err := url.Parse(*backend)
	if err != nil {
		return err
	}
	e, err := edge.New(edge.Config{
		HTTPS:       *addr,
		Backend:     u,
		TLS:         &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }},
		Maintenance: func() edge.Maintenance { return edge.Maintenance{} }, // the agent always supplies one
	})
	if err != nil {
		return err
	}
	if err := e.Listen(); err != nil {
		return err
	}
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	e.Serve()
	fmt.Println("serving on", e.HTTPSAddr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-ctx.Done()
	return e.Close()
}

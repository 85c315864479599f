package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// target is one thing wrk measures: the backend itself or a TLS proxy in
// front of it, with its runs.
type target struct {
	name  string
	start func(ctx context.Context, addr string) (*exec.Cmd, error) // nil: the backend, directly

	keepAlive, single, handshakes []wrkRun
}

const (
	nameDirect = "backend directly (plain HTTP)"
	nameEdge   = "nodeagent edge"
	nameCaddy  = "Caddy reverse_proxy"
	nameNginx  = "nginx TLS proxy"
)

// bench holds the shared pieces: the work directory, the certificate
// every proxy serves, the backend.
type bench struct {
	dir, cert, key string
	backendAddr    string
	backendPID     int    // its process group
	self           string // this binary, for serve-edge
	cpuprofile     string
}

// writeCert writes a self-signed ECDSA P-256 certificate for 127.0.0.1,
// the key type certmagic and most sites use.
func (b *bench) writeCert() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	b.cert, b.key = filepath.Join(b.dir, "cert.pem"), filepath.Join(b.dir, "key.pem")
	if err := os.WriteFile(b.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(b.key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
}

// nginxConf is shared by the backend (static file) and the TLS proxy.
const nginxConf = `daemon off;
worker_processes 2;
pid %[1]s/nginx-%[2]s.pid;
error_log %[1]s/nginx-%[2]s-error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	default_type text/html;
	keepalive_requests 1000000;
	client_body_temp_path %[1]s/tmp-%[2]s;
	proxy_temp_path %[1]s/tmp-%[2]s;
	fastcgi_temp_path %[1]s/tmp-%[2]s;
	uwsgi_temp_path %[1]s/tmp-%[2]s;
	scgi_temp_path %[1]s/tmp-%[2]s;
%[3]s
}
`

// startBackend starts nginx serving a 1 KiB page: the same backend for
// every proxy, like the Moodle node's own web server.
func (b *bench) startBackend(ctx context.Context) (*exec.Cmd, error) {
	www := filepath.Join(b.dir, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		return nil, err
	}
	page := "<!DOCTYPE html><title>backend</title>" + strings.Repeat("x", 1024-37) + "\n"
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte(page), 0o644); err != nil {
		return nil, err
	}
	server := fmt.Sprintf("\tserver { listen %s; root %s; }", b.backendAddr, www)
	return b.startNginx(ctx, "backend", server, b.backendAddr)
}

func (b *bench) startNginx(ctx context.Context, name, server, addr string) (*exec.Cmd, error) {
	conf := filepath.Join(b.dir, "nginx-"+name+".conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, b.dir, name, server), 0o644); err != nil {
		return nil, err
	}
	return b.start(ctx, addr, "nginx", "-e", filepath.Join(b.dir, "nginx-"+name+"-error.log"), "-c", conf)
}

// proxyNginx is nginx's TLS proxy configured as the usual guides do, with
// keep-alive to the backend (without it nginx opens a connection per
// request and loses).
func (b *bench) proxyNginx(ctx context.Context, addr string) (*exec.Cmd, error) {
	server := fmt.Sprintf(`	upstream backend { server %s; keepalive 128; }
	server {
		listen %s ssl http2;
		ssl_certificate %s;
		ssl_certificate_key %s;
		ssl_protocols TLSv1.2 TLSv1.3;
		location / {
			proxy_pass http://backend;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host $host;
			proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
			proxy_set_header X-Forwarded-Proto $scheme;
			proxy_set_header X-Forwarded-Host $host;
		}
	}`, b.backendAddr, addr, b.cert, b.key)
	return b.startNginx(ctx, "proxy", server, addr)
}

// proxyCaddy is Caddy's reverse_proxy with the same certificate.
func (b *bench) proxyCaddy(ctx context.Context, addr string) (*exec.Cmd, error) {
	conf := filepath.Join(b.dir, "Caddyfile")
	caddyfile := fmt.Sprintf(`{
	admin off
	auto_https off
	storage file_system %s
}
https://%s {
	tls %s %s
	reverse_proxy %s
}
`, filepath.Join(b.dir, "caddy"), addr, b.cert, b.key, b.backendAddr)
	if err := os.WriteFile(conf, []byte(caddyfile), 0o644); err != nil {
		return nil, err
	}
	return b.start(ctx, addr, "caddy", "run", "--adapter", "caddyfile", "--config", conf)
}

// proxyEdge is internal/edge, run by this binary's serve-edge mode.
func (b *bench) proxyEdge(ctx context.Context, addr string) (*exec.Cmd, error) {
	args := []string{"serve-edge", "-https", addr, "-backend", "http://" + b.backendAddr, "-cert", b.cert, "-key", b.key}
	if b.cpuprofile != "" {
		args = append(args, "-cpuprofile", b.cpuprofile)
	}
	return b.start(ctx, addr, b.self, args...)
}

// start runs a server and waits until addr accepts connections.
func (b *bench) start(ctx context.Context, addr, name string, args ...string) (*exec.Cmd, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "HOME="+b.dir, "XDG_DATA_HOME="+b.dir, "XDG_CONFIG_HOME="+b.dir)
	log, err := os.Create(filepath.Join(b.dir, filepath.Base(name)+"-"+strings.ReplaceAll(addr, ":", "_")+".log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return cmd, nil
		}
		if time.Now().After(deadline) {
			stop(cmd)
			return nil, fmt.Errorf("%s did not listen on %s within 15 s (log in %s)", name, addr, log.Name())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM (nginx: fast shutdown) to the server's process group
// and waits for it.
func stop(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// freeAddr returns a free 127.0.0.1 address.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// toolVersions names the versions of the compared servers.
func toolVersions() string {
	nginx, _ := exec.Command("nginx", "-v").CombinedOutput()
	caddy, _ := exec.Command("caddy", "version").Output()
	wrk, _ := exec.Command("wrk", "-v").CombinedOutput()
	first := func(b []byte) string { l, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n"); return l }
	return fmt.Sprintf("%s, Caddy %s, %s", first(nginx), first(caddy), strings.Fields(first(wrk) + " ?")[0]+" "+strings.Fields(first(wrk) + " ? ?")[1])
}

// Package guard owns the protections every listener of the agent shares
// against clients that hold its resources without credentials: header size
// and time limits, read and write deadlines that trail the progress of
// request bodies and responses (a slow transfer that keeps moving goes on,
// one that stalls is cut), and caps on open connections, in total and per
// client address.
//
// It works on any net.Listener (one the agent binds, or one inherited from
// systemd) and any http.Handler, through Limits.Server and Limits.Listen;
// it knows nothing of what the listeners serve and touches no
// configuration.
package guard

import (
	"net/http"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// Limits are the protections of one listener.
type Limits struct {
	// ReadHeaderTimeout bounds the request line and headers (and the TLS
	// handshake); IdleTimeout a keep-alive connection between requests.
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	// MaxHeaderBytes bounds the request line and headers together.
	MaxHeaderBytes int

	// While a request body is read, at least BodyMinBytes must arrive in
	// every BodyWindow, or the read fails and the connection is closed. A
	// body the handler leaves unread must arrive within one window.
	BodyWindow   time.Duration
	BodyMinBytes int64
	// WriteWindow bounds each write of a response to a client that does
	// not read (between half and all of it): there is no limit on the
	// whole response.
	WriteWindow time.Duration

	// MaxConns bounds the connections open at once; past it, new ones wait
	// in the kernel's accept queue (0: no limit).
	MaxConns int
	// MaxConnsPerClient bounds the connections of one client address (an
	// IPv6 /64); past it, a new connection is closed at once (0: no
	// limit). Exempt clients (trusted proxies) have no such bound.
	MaxConnsPerClient int
	Exempt            []netip.Prefix
}

// Defaults shared by every listener.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultBodyWindow        = 30 * time.Second
	DefaultBodyMinBytes      = 4 << 10
	DefaultWriteWindow       = time.Minute
)

// Header limits: the API carries a token and small JSON; the edge carries
// browsers' cookies (nginx allows 4 × 8 KiB header lines by default).
const (
	apiMaxHeaderBytes  = 16 << 10
	edgeMaxHeaderBytes = 64 << 10
)

// Per-client bound of the cluster API: agents and load balancer probes use
// a few connections each.
const clusterPerClient = 32

func base() Limits {
	return Limits{
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		IdleTimeout:       DefaultIdleTimeout,
		BodyWindow:        DefaultBodyWindow,
		BodyMinBytes:      DefaultBodyMinBytes,
		WriteWindow:       DefaultWriteWindow,
	}
}

// The connection caps take a share of the process's file descriptor limit,
// so that whatever the listeners hold, the others, gossip, the release
// files and the edge's connections to its backend keep descriptors.
// Edge connections count twice (each has one to the backend).

// Cluster returns the limits of the cluster API (agents, probes, admin
// calls from other hosts): a per-client cap, since its clients are few.
func Cluster() Limits {
	l := base()
	l.MaxHeaderBytes = apiMaxHeaderBytes
	l.MaxConns = fdShare(8, 1024)
	l.MaxConnsPerClient = clusterPerClient
	return l
}

// Local returns the limits of the local API on loopback, where every
// client has the same address: a total cap only.
func Local() Limits {
	l := base()
	l.MaxHeaderBytes = apiMaxHeaderBytes
	l.MaxConns = fdShare(16, 128)
	return l
}

// Edge returns the limits of the edge's listeners. Browsers behind one
// NAT or load balancer share an address, so the per-client cap is the
// operator's choice (0: none); exempt are never capped.
func Edge(perClient int, exempt []netip.Prefix) Limits {
	l := base()
	l.MaxHeaderBytes = edgeMaxHeaderBytes
	l.MaxConns = fdShare(4, 0)
	l.MaxConnsPerClient = perClient
	l.Exempt = exempt
	return l
}

// fdShare returns 1/div of the soft RLIMIT_NOFILE (Go raises it to the
// hard limit at start), at most ceiling when ceiling > 0, at least 16.
func fdShare(div, ceiling int) int {
	n := 1 << 20 / div // no readable limit: plenty
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < 1<<30 {
		n = int(rl.Cur) / div
	}
	if ceiling > 0 {
		n = min(n, ceiling)
	}
	return max(n, 16)
}

// Server returns an http.Server for h with the header limits and timeouts
// of l, and h wrapped so that request bodies and responses must keep
// moving. Set the rest (TLSConfig, ErrorLog, BaseContext) on the result.
func (l Limits) Server(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           l.Handler(h),
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
	}
}

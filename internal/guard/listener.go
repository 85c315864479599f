package guard

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Listener is a net.Listener that caps open connections: in total (Accept
// waits for a slot, leaving new connections in the kernel's queue) and per
// client address (a connection beyond the cap is closed at once).
type Listener struct {
	net.Listener
	name      string
	perClient int
	exempt    []netip.Prefix
	slots     chan struct{} // one per open connection; nil: no total cap
	log       *slog.Logger

	mu      sync.Mutex
	clients map[netip.Addr]int
	lastLog time.Time
	quiet   int // refusals not logged since lastLog

	open      atomic.Int64
	refused   atomic.Uint64
	closed    chan struct{}
	closeOnce sync.Once
}

// Listen wraps ln with the connection caps of l. name (a config key)
// labels its log lines.
func (l Limits) Listen(ln net.Listener, name string, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	gl := &Listener{
		Listener: ln, name: name, perClient: l.MaxConnsPerClient, exempt: l.Exempt,
		log: log, clients: map[netip.Addr]int{}, closed: make(chan struct{}),
	}
	if l.MaxConns > 0 {
		gl.slots = make(chan struct{}, l.MaxConns)
	}
	return gl
}

// refuseLogEvery bounds the log lines about refused connections.
const refuseLogEvery = 10 * time.Second

// Accept waits for a free slot, then returns the next connection whose
// client is within its cap.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		if err := l.takeSlot(); err != nil {
			return nil, err
		}
		c, err := l.Listener.Accept()
		if err != nil {
			l.freeSlot()
			return nil, err
		}
		client, capped := l.clientOf(c)
		if capped && !l.admit(client) {
			c.Close()
			l.freeSlot()
			l.refuse(client)
			continue
		}
		l.open.Add(1)
		return &conn{Conn: c, l: l, client: client, capped: capped}, nil
	}
}

func (l *Listener) takeSlot() error {
	if l.slots == nil {
		return nil
	}
	select {
	case <-l.closed:
		return net.ErrClosed
	default:
	}
	select {
	case l.slots <- struct{}{}:
		return nil
	case <-l.closed:
		return net.ErrClosed
	}
}

func (l *Listener) freeSlot() {
	if l.slots != nil {
		<-l.slots
	}
}

// clientOf returns the key of c's client (its address, an IPv6 /64) and
// whether the per-client cap applies to it.
func (l *Listener) clientOf(c net.Conn) (netip.Addr, bool) {
	if l.perClient <= 0 {
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}, false
	}
	addr := ap.Addr().Unmap()
	for _, p := range l.exempt {
		if p.Contains(addr) {
			return addr, false
		}
	}
	if addr.Is6() {
		if p, err := addr.Prefix(64); err == nil {
			addr = p.Addr()
		}
	}
	return addr, true
}

func (l *Listener) admit(client netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clients[client] >= l.perClient {
		return false
	}
	l.clients[client]++
	return true
}

func (l *Listener) release(client netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clients[client]--; l.clients[client] <= 0 {
		delete(l.clients, client)
	}
}

// refuse counts a refused connection and logs at most one line per
// refuseLogEvery.
func (l *Listener) refuse(client netip.Addr) {
	l.refused.Add(1)
	l.mu.Lock()
	now := time.Now()
	if now.Sub(l.lastLog) < refuseLogEvery {
		l.quiet++
		l.mu.Unlock()
		return
	}
	quiet := l.quiet
	l.lastLog, l.quiet = now, 0
	l.mu.Unlock()
	l.log.Warn("connection refused: too many open from one client", "listener", l.name,
		"client", client, "max_per_client", l.perClient, "refused_unlogged", quiet)
}

// Close closes the listener and wakes an Accept waiting for a slot. Open
// connections stay open.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// Open returns the number of open connections.
func (l *Listener) Open() int { return int(l.open.Load()) }

// Refused returns the number of connections closed at once because their
// client had too many open.
func (l *Listener) Refused() uint64 { return l.refused.Load() }

// conn is an accepted connection; closing it frees its slot.
type conn struct {
	net.Conn
	l      *Listener
	client netip.Addr
	capped bool
	once   sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		if c.capped {
			c.l.release(c.client)
		}
		c.l.open.Add(-1)
		c.l.freeSlot()
	})
	return err
}

// CloseWrite half-closes a TCP connection, as net/http does before closing
// one with unread input (so the client gets the answer, not a reset).
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

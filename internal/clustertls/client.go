package clustertls

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// DialFunc dials the connections of agent-to-agent calls (the agent counts
// their bytes).
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// HTTPClient returns a client for agent-to-agent calls through dial (nil:
// the default dialer). It keeps connections to each peer alive; after any
// change of the keys or of the leaf, new requests go over new connections,
// so that a connection never carries a certificate its peer may have
// stopped trusting (requests already running finish on the old ones).
// Timeouts bound connection set-up only, as content downloads may run long.
func (id *Identity) HTTPClient(dial DialFunc) *http.Client {
	return &http.Client{Transport: &rotatingTransport{id: id, dial: dial}}
}

// rotatingTransport is an http.Transport replaced at every identity change.
type rotatingTransport struct {
	id   *Identity
	dial DialFunc

	mu  sync.Mutex
	gen uint64
	cur *http.Transport
}

func (t *rotatingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.current().RoundTrip(req)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// current transport.
func (t *rotatingTransport) CloseIdleConnections() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur != nil {
		t.cur.CloseIdleConnections()
	}
}

func (t *rotatingTransport) current() *http.Transport {
	gen := t.id.gen.Load()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur != nil && t.gen == gen {
		return t.cur
	}
	if t.cur != nil {
		t.cur.CloseIdleConnections()
	}
	t.cur, t.gen = t.id.newTransport(t.dial), gen
	return t.cur
}

func (id *Identity) newTransport(dial DialFunc) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = id.ClientConfig()
	tr.ForceAttemptHTTP2 = true
	tr.TLSHandshakeTimeout = 10 * time.Second
	tr.ResponseHeaderTimeout = 60 * time.Second
	tr.MaxIdleConnsPerHost = 4
	// A connection that has received nothing for 5 s is pinged, and closed
	// when the ping is not answered within 5 s: after a partition (or a
	// one-way loss) a request in flight fails within 10 s and is retried on
	// a new connection, instead of waiting for TCP's retransmissions, whose
	// back-off reaches tens of seconds.
	tr.HTTP2 = &http.HTTP2Config{SendPingTimeout: 5 * time.Second, PingTimeout: 5 * time.Second}
	if dial != nil {
		tr.DialContext = dial
	}
	return tr
}

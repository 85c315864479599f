package agent

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
)

// wireCounter counts the bytes of agent-to-agent connections as they cross
// the network (TLS records and HTTP framing included): what a sync costs.
type wireCounter struct {
	rx, tx atomic.Int64
}

// instrument makes the client's transport count through c.
func (c *wireCounter) instrument(hc *http.Client) {
	tr := hc.Transport.(*http.Transport)
	dialer := &net.Dialer{}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countedConn{Conn: conn, c: c}, nil
	}
}

type countedConn struct {
	net.Conn
	c *wireCounter
}

func (cc *countedConn) Read(p []byte) (int, error) {
	n, err := cc.Conn.Read(p)
	cc.c.rx.Add(int64(n))
	return n, err
}

func (cc *countedConn) Write(p []byte) (int, error) {
	n, err := cc.Conn.Write(p)
	cc.c.tx.Add(int64(n))
	return n, err
}

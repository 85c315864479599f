package agent

import (
	"context"
	"net"
	"sync/atomic"
)

// wireCounter counts the bytes of agent-to-agent connections as they cross
// the network (TLS records and HTTP framing included): what a sync costs.
type wireCounter struct {
	rx, tx atomic.Int64
}

// dial connects for agent-to-agent calls and counts through c.
func (c *wireCounter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: conn, c: c}, nil
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

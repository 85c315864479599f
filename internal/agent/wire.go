package agent

import (
	"context"
	"net"
	"sync/atomic"
	"time"
)

// wireCounter counts the bytes of agent-to-agent connections as they cross
// the network (TLS records and HTTP framing included): what a sync costs.
type wireCounter struct {
	rx, tx atomic.Int64
}

// peerDialer connects to other agents: on their own network a connection
// that is not up within 5 s is not coming (the kernel would retry its SYN
// for two minutes, long after a partition healed); keep-alive probes find
// a connection whose peer went away.
var peerDialer = net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}

// dial connects for agent-to-agent calls and counts through c.
func (c *wireCounter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := peerDialer.DialContext(ctx, network, addr)
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

package handoff

import (
	"context"
	"fmt"
	"net"
	"time"
)

// serves reports whether a socket bound to bound is what the configured
// listen address addr asks for: the same port (any port for port 0) and
// the same IP — an unspecified one for an empty host, one of a host name's
// addresses.
func serves(bound *net.TCPAddr, addr string) (bool, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false, err
	}
	p, err := net.LookupPort("tcp", port)
	if err != nil {
		return false, err
	}
	if p != 0 && p != bound.Port {
		return false, nil
	}
	if host == "" {
		return bound.IP.IsUnspecified(), nil
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.Equal(bound.IP), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
	if err != nil {
		return false, fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, ip := range ips {
		if ip.Equal(bound.IP) {
			return true, nil
		}
	}
	return false, nil
}

package config

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
)

type listener struct {
	key  string
	host string
	port int
}

// portClashes reports two listeners on the same port whose hosts overlap
// (equal, or either one all interfaces). Port 0 never clashes.
func (v *validator) portClashes(c *Config) {
	addrs := []struct{ key, addr string }{
		{"gossip.bind", c.Gossip.Bind},
		{"cluster.listen", c.Cluster.Listen},
		{"api.listen", c.API.Listen},
	}
	if c.Edge != nil {
		addrs = append(addrs,
			struct{ key, addr string }{"edge.https", c.Edge.HTTPS},
			struct{ key, addr string }{"edge.http", c.Edge.HTTP})
	}
	var seen []listener
	for _, a := range addrs {
		l, ok := parseListener(a.key, a.addr)
		if !ok {
			continue // empty or invalid: reported elsewhere
		}
		for _, s := range seen {
			if s.port == l.port && hostsOverlap(s.host, l.host) {
				v.addf(l.key, "port %d clashes with %s (%s)", l.port, s.key, net.JoinHostPort(s.host, strconv.Itoa(s.port)))
			}
		}
		seen = append(seen, l)
	}
}

func parseListener(key, addr string) (listener, bool) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return listener{}, false
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port <= 0 {
		return listener{}, false
	}
	return listener{key: key, host: host, port: port}, true
}

func hostsOverlap(a, b string) bool {
	ipsA, ipsB := hostIPs(a), hostIPs(b)
	if anyUnspecified(ipsA) || anyUnspecified(ipsB) {
		return true
	}
	if ipsA == nil || ipsB == nil {
		return strings.EqualFold(a, b) // DNS names: compare as written
	}
	for _, x := range ipsA {
		for _, y := range ipsB {
			if x == y {
				return true
			}
		}
	}
	return false
}

// hostIPs returns the addresses a listen host binds: the unspecified
// address for "" (all interfaces), both loopbacks for localhost, the IP
// itself, or nil for another DNS name.
func hostIPs(h string) []netip.Addr {
	if h == "" {
		return []netip.Addr{netip.IPv4Unspecified()}
	}
	if strings.EqualFold(h, "localhost") {
		return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		return []netip.Addr{ip.Unmap()}
	}
	return nil
}

func anyUnspecified(ips []netip.Addr) bool {
	for _, ip := range ips {
		if ip.IsUnspecified() {
			return true
		}
	}
	return false
}

package edge

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// peerAddr returns the TCP peer of a request (IPv4-mapped addresses
// unmapped, zones dropped).
func peerAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap().WithZone("")
}

// isTrusted reports whether a is in one of the trusted ranges.
func (e *Edge) isTrusted(a netip.Addr) bool { return allowed(e.trusted, a) }

// clientAddr resolves the real client of a request: the TCP peer, unless
// the peer is a trusted proxy; then X-Forwarded-For is walked from the
// right (the entry the nearest proxy appended) past every trusted hop, and
// the first untrusted address is the client. If every hop is trusted the
// left-most one is. A malformed entry ends the walk at the hop after it,
// which is the last one a trusted proxy vouched for.
func (e *Edge) clientAddr(r *http.Request) (client netip.Addr, peerTrusted bool) {
	peer := peerAddr(r)
	if !peer.IsValid() || !e.isTrusted(peer) {
		return peer, false
	}
	client = peer
	values := r.Header.Values("X-Forwarded-For")
	for i := len(values) - 1; i >= 0; i-- {
		list := values[i]
		for list != "" {
			var hop string
			if j := strings.LastIndexByte(list, ','); j >= 0 {
				hop, list = list[j+1:], list[:j]
			} else {
				hop, list = list, ""
			}
			a, ok := parseHop(hop)
			if !ok {
				return client, true
			}
			client = a
			if !e.isTrusted(a) {
				return client, true
			}
		}
	}
	return client, true
}

// parseHop parses one X-Forwarded-For entry: an IP, possibly with a port
// (some load balancers add one) or in brackets.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		return a.Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}

// allowed reports whether a is in one of the ranges.
func allowed(ranges []netip.Prefix, a netip.Addr) bool {
	for _, p := range ranges {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParsePrefixes parses CIDRs (edge.trusted_proxies, maintenance allow
// lists) for Config and Maintenance.
func ParsePrefixes(cidrs []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(cidrs))
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("invalid CIDR %q", c)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

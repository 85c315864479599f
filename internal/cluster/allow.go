package cluster

import (
	"net/netip"
	"slices"
)

// allowWire is a node's allow register: its maintenance.allow.
type allowWire struct {
	Allow []string `json:"allow"`
}

// SetAllow announces node's maintenance.allow list when it differs from
// what the cluster has (an empty list is written only over a non-empty
// one, so a node that never set the key writes nothing).
func (s *State) SetAllow(node string, cidrs []string) error {
	var cur allowWire
	_, ok := s.get(keyAllowPrefix+node, &cur)
	if slices.Equal(cur.Allow, cidrs) || !ok && len(cidrs) == 0 {
		return nil
	}
	_, err := s.set(keyAllowPrefix+node, allowWire{Allow: cidrs})
	return err
}

// Allow is the union of the maintenance.allow lists the given nodes
// announced, sorted, each range once.
func (s *State) Allow(nodes []string) []string {
	var all []string
	for _, n := range nodes {
		var w allowWire
		if _, ok := s.get(keyAllowPrefix+n, &w); ok {
			all = append(all, w.Allow...)
		}
	}
	slices.Sort(all)
	return slices.Compact(all)
}

// ParseAllow reads allow lists as the cluster state holds them (the
// maintenance register's, the nodes' maintenance.allow): every range that
// parses, masked, and the entries that do not. Any node may have written
// them, so a bad entry is left out on its own: one node's typo never drops
// the ranges of the others, and an operator is never locked out by it.
func ParseAllow(lists ...[]string) (allow []netip.Prefix, invalid []string) {
	for _, c := range slices.Concat(lists...) {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			invalid = append(invalid, c)
			continue
		}
		allow = append(allow, p.Masked())
	}
	return allow, invalid
}

// Package gossip owns cluster membership, node metadata and the small
// cluster-wide registers (target revision, maintenance, certificate version)
// of nodeagent, on top of hashicorp/memberlist.
//
// Every node advertises a compact NodeMeta (role, API address, applied
// revision, drain and readiness flags) in its memberlist metadata. Registers
// are last-writer-wins values ordered by a Lamport clock; they spread by
// gossip broadcasts that every receiver re-broadcasts, converge through
// push/pull state exchange, and are persisted to a state file so a restarted
// node keeps them even when it is alone.
//
// Membership heals itself: the state file also remembers the members this
// node has seen, which it rejoins at start; missing members and the join
// list are retried for as long as they matter (join.go); and a node that
// comes back is taken at once even by members that still hold its previous
// life (repair.go). A member gone for good is forgotten on request, on
// every agent and for good (forget.go). queuepin.go works around a
// memberlist bug that lost broadcasts.
//
// The package knows nothing of mirrors, HTTP or certificates: it moves small
// JSON values and reports who is in the cluster. File content never travels
// through it.
package gossip

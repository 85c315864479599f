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
// The package knows nothing of mirrors, HTTP or certificates: it moves small
// JSON values and reports who is in the cluster. File content never travels
// through it.
package gossip

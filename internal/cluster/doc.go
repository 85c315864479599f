// Package cluster is the typed cluster-wide state of nodeagent, kept in
// gossip registers: the target revision, maintenance (site level and the
// Moodle hold), the last certificate announced, and each node's
// maintenance.allow list. It owns the register keys and their wire
// structs, so an API type can change without breaking a rolling upgrade:
// the wire format is that of the agents before this package (see
// wire_test.go), and new fields are only ever added, omitted when unset.
//
// It reads and writes registers and nothing else: no files, no HTTP, no
// knowledge of what the agent does with the state.
package cluster

package api

import "time"

// History is the body of GET /v1/history: what this agent saw of the
// cluster since it started, from gossip, bounded in memory (the last
// hours; lost at restart). Every agent records the same events, so any
// node answers for the whole cluster.
type History struct {
	// Since is when this agent began recording.
	Since time.Time `json:"since"`
	// Lag samples the web nodes behind the target: on every change of
	// their number, and every few seconds while one is behind.
	Lag []LagSample `json:"lag"`
	// Syncs are the revision changes of web nodes, oldest first.
	Syncs []SyncRecord `json:"syncs"`
	// Targets are the changes of the cluster target, oldest first.
	Targets []TargetChange `json:"targets"`
}

// LagSample is the cluster's lag at one moment.
type LagSample struct {
	Time time.Time `json:"time"`
	// Web is the number of live web nodes, Behind those not serving the
	// target.
	Web    int `json:"web"`
	Behind int `json:"behind"`
	// MaxLagSeconds is the longest time a live web node has been behind.
	MaxLagSeconds float64 `json:"max_lag_seconds"`
}

// SyncRecord is one web node switching to a revision: Seconds is the time
// from when it fell behind (or the new target was first seen here, if
// later) to when it announced the new revision.
type SyncRecord struct {
	Node     string    `json:"node"`
	Seq      uint64    `json:"seq"`
	ID       string    `json:"id"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Seconds  float64   `json:"seconds"`
}

// Kinds of target change.
const (
	TargetPublish  = "publish"  // a revision newer than any seen before
	TargetRollback = "rollback" // an older revision
)

// TargetChange is the cluster target moving to another revision.
type TargetChange struct {
	Time  time.Time `json:"time"`
	Seq   uint64    `json:"seq"`
	ID    string    `json:"id"`
	SetBy string    `json:"set_by"` // the node that wrote the target
	Kind  string    `json:"kind"`
}

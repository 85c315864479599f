package api

import (
	"time"

	"github.com/nodeagent/nodeagent/internal/certs"
	"github.com/nodeagent/nodeagent/internal/mirror"
	"github.com/nodeagent/nodeagent/internal/procedure"
)

// RevRef names a revision.
type RevRef struct {
	Seq uint64 `json:"seq"`
	ID  string `json:"id"`
}

// RevisionStatus is a node's position against the cluster target.
type RevisionStatus struct {
	Applied    *RevRef `json:"applied"`
	Target     *RevRef `json:"target"`
	InSync     bool    `json:"in_sync"`
	LagSeconds float64 `json:"lag_seconds"`
}

// Status is the body of GET /v1/status.
type Status struct {
	Node        string               `json:"node"`
	Role        string               `json:"role"`
	Version     string               `json:"version"`
	Revision    RevisionStatus       `json:"revision"`
	Drained     bool                 `json:"drained"`
	Maintenance MaintenanceStatus    `json:"maintenance"`
	Transfer    Transfer             `json:"transfer"`
	Sync        *mirror.SyncProgress `json:"sync,omitempty"`
	SyncError   string               `json:"sync_error,omitempty"`
	// PeerUpload is what a web node sent to the peers that sync from it.
	PeerUpload *PeerUpload `json:"peer_upload,omitempty"`
	// Publish is the controller's running publish, or its last one.
	Publish *mirror.PublishProgress `json:"publish,omitempty"`
	// Certificate is the edge's certificate (web nodes with an edge).
	Certificate *certs.State `json:"certificate,omitempty"`
	DB          *DBStatus    `json:"db,omitempty"` // controller with a db section

	// Gossip is what this node sees of a split: a web node's view of the
	// controller, the controller's missing web nodes.
	Gossip *GossipStatus `json:"gossip,omitempty"`

	// Integrity is the background audit of the served release (web).
	Integrity *mirror.AuditStatus `json:"integrity,omitempty"`
}

// GossipStatus is the gossip section of GET /v1/status.
type GossipStatus struct {
	Controller *ControllerStatus `json:"controller,omitempty"`  // web nodes
	MissingWeb []MissingMember   `json:"missing_web,omitempty"` // controller
}

// ControllerStatus is a web node's view of the controller.
type ControllerStatus struct {
	Alive bool   `json:"alive"`
	Name  string `json:"name,omitempty"` // the live controller, or the last one seen
	// LastSeen is when Name was last seen alive (now while alive).
	LastSeen *time.Time `json:"last_seen,omitempty"`
	// UnseenSeconds is how long this node has been without a live
	// controller, counted from its own start at most; 0 while one is alive.
	UnseenSeconds float64 `json:"unseen_seconds"`
	// Missing: unseen for 30 s (30 gossip probe intervals) or longer;
	// readiness check gossip:controller warns.
	Missing bool `json:"missing"`
}

// MissingMember is a web node the controller saw alive in the last hour and
// has not seen alive for 30 s.
type MissingMember struct {
	Name  string    `json:"name"`
	State string    `json:"state"` // dead or left
	Since time.Time `json:"since"` // last seen alive
}

// Transfer counts the bytes of this node's calls to other agents (content
// fetches), as they crossed the network.
type Transfer struct {
	RxBytes int64 `json:"rx_bytes"`
	TxBytes int64 `json:"tx_bytes"`
}

// PeerUpload is what a web node sent to its peers, and its limits
// (mirror.peer_upload).
type PeerUpload struct {
	mirror.PeerUploadStats
	Rate        int64 `json:"rate"` // bytes per second; 0: no bound
	Concurrency int   `json:"concurrency"`
}

// RevisionItem is one revision in GET /v1/revisions.
type RevisionItem struct {
	mirror.Revision
	Target  bool `json:"target,omitempty"`
	Applied bool `json:"applied,omitempty"`
	// PinnedChanged names the mirror.pinned files (config.php) that differ
	// from the revision before it (controller): a database switch shows
	// here.
	PinnedChanged []string `json:"pinned_changed,omitempty"`
}

// RevisionList is the body of GET /v1/revisions: published revisions on a
// controller, kept releases on a web node; oldest first.
type RevisionList struct {
	Revisions []RevisionItem `json:"revisions"`
	Target    *RevRef        `json:"target"`
}

// Health statuses (draft-inadarei-api-health-check).
const (
	StatusPass = "pass"
	StatusWarn = "warn"
	StatusFail = "fail"
)

// Check is one readiness check result.
type Check struct {
	Status        string    `json:"status"`
	ObservedValue any       `json:"observedValue,omitempty"`
	Output        string    `json:"output,omitempty"`
	Time          time.Time `json:"time"`
}

// Health is the body of GET /readyz (application/health+json).
type Health struct {
	Status string             `json:"status"`
	Checks map[string][]Check `json:"checks"`
}

// Worst returns the worst of the check statuses (pass when none).
func Worst(checks map[string][]Check) string {
	worst := StatusPass
	for _, cs := range checks {
		for _, c := range cs {
			switch {
			case c.Status == StatusFail:
				return StatusFail
			case c.Status == StatusWarn:
				worst = StatusWarn
			}
		}
	}
	return worst
}

// Maintenance is the cluster-wide maintenance state (GET/PUT
// /v1/maintenance). It has two levels: site maintenance (Enabled), where
// each web node's edge shows the maintenance page to clients outside the
// allow list while allowed clients reach a working Moodle; and the Moodle
// hold (Moodle), where the controller writes Moodle's climaintenance.html,
// so Moodle answers 503 to everyone and its cron stops.
type Maintenance struct {
	Enabled bool   `json:"enabled"`
	Moodle  bool   `json:"moodle"`
	Message string `json:"message,omitempty"`
	// Reason says why it is on (e.g. "deploy <id>: <message>"); never on
	// the public page.
	Reason string     `json:"reason,omitempty"`
	Allow  []string   `json:"allow,omitempty"`
	Until  *time.Time `json:"until,omitempty"`
	// Set by the agent when read: the gossip clock and writer of the state,
	// whether each level is in force now (set and before until), and the
	// maintenance.allow lists of the cluster's nodes, which every edge
	// lets through besides Allow.
	Clock        uint64   `json:"clock,omitzero"`
	SetBy        string   `json:"set_by,omitempty"`
	Active       bool     `json:"active"`
	MoodleActive bool     `json:"moodle_active"`
	ConfigAllow  []string `json:"config_allow,omitempty"`
}

// MaintenanceRequest is the body of PUT /v1/maintenance: enabled for site
// maintenance, moodle for the Moodle hold; neither turns both off.
type MaintenanceRequest struct {
	Enabled bool       `json:"enabled"`
	Moodle  bool       `json:"moodle,omitempty"`
	Message string     `json:"message"`
	Allow   []string   `json:"allow"`
	Until   *time.Time `json:"until"`
}

// MaintenanceStatus is a node's view of maintenance in /v1/status.
type MaintenanceStatus struct {
	Maintenance
	// Applied is true when this node applies the current state.
	Applied bool `json:"applied"`
}

// RollbackRequest is the body of POST /v1/rollback.
type RollbackRequest struct {
	// Revision is a seq ("3") or an id prefix.
	Revision string `json:"revision"`
	// Force rolls back even when a mirror.pinned file (config.php) of the
	// revision differs from the target's: the site may move to another
	// database.
	Force bool `json:"force,omitempty"`
	// AllowMissing lets deploy.after_all run when fewer web nodes serve
	// the revision than the cluster had.
	AllowMissing bool `json:"allow_missing,omitempty"`
}

// RollbackResponse is the answer of POST /v1/rollback.
type RollbackResponse struct {
	Target RevRef `json:"target"`
	// PinnedChanges are the pinned files a forced rollback changed, with
	// the database settings that differ.
	PinnedChanges []string `json:"pinned_changes,omitempty"`
	// FollowUp is the run that waits for every web node, then runs
	// deploy.after_all; only when that is set.
	FollowUp string `json:"follow_up,omitempty"`
}

// DeployRequest is the body of POST /v1/deploys.
type DeployRequest struct {
	// Message is the revision's; it never reaches the maintenance page.
	Message     string `json:"message"`
	Maintenance bool   `json:"maintenance"`
	// MaintenanceMessage is shown on the maintenance pages (site and
	// Moodle hold); default: a generic upgrade notice.
	MaintenanceMessage string `json:"maintenance_message,omitempty"`
	// Run is a shell command run on the controller after every web node
	// serves the new revision (e.g. Moodle's upgrade script).
	Run string `json:"run"`
	// AllowMissing lets the deploy go on when fewer web nodes serve the
	// new revision than the cluster had (seen in the last hour, at least
	// deploy.min_web).
	AllowMissing bool `json:"allow_missing,omitempty"`
}

// Deploy step and run states.
const (
	DeployPending   = procedure.Pending
	DeployRunning   = procedure.Running
	DeployOK        = procedure.OK
	DeployFailed    = procedure.Failed
	DeploySucceeded = procedure.Succeeded
)

// DeployStep is one step of a deploy or a restore.
type DeployStep = procedure.StepRecord

// Deploy is a deploy run (GET /v1/deploys/{id}), or the follow-up of a
// plain publish or rollback with deploy.after_all.
type Deploy struct {
	ID       string        `json:"id"`
	Kind     string        `json:"kind"` // deploy, publish, rollback
	Status   string        `json:"status"`
	Request  DeployRequest `json:"request"`
	Started  time.Time     `json:"started"`
	Finished *time.Time    `json:"finished,omitempty"`
	Seconds  float64       `json:"seconds"`
	Revision *RevRef       `json:"revision,omitempty"`
	Steps    []DeployStep  `json:"steps"`
	Error    string        `json:"error,omitempty"`
}

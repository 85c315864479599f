package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/cluster"
	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/errs"
	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/mirror"
)

// role is what differs between a controller and a web node. The agent
// holds exactly one; what only a controller does is reached through
// controllerFor, which names the operation in its error.
type role interface {
	// openLocal opens what needs no cluster (mirror, database);
	// openCluster what follows the cluster, once gossip runs.
	openLocal(ctx context.Context) error
	openCluster(ctx context.Context) error
	// stop ends the role's loops before the agent waits for its
	// goroutines; closeCluster and closeLocal close in reverse order of
	// opening, around gossip's close.
	stop() error
	closeCluster() error
	closeLocal() error

	// apiConfig adds the role's services to the API.
	apiConfig(*api.Config)
	// observe follows the cluster: called by the watch loop on every
	// change and every second.
	observe()
	// applyMaintenance makes this node follow the maintenance state m;
	// held reports whether this node now holds Moodle for it.
	applyMaintenance(m cluster.Maintenance) (held bool, err error)

	// serving is the revision this node serves: the applied release on a
	// web node, the cluster target on the controller.
	serving() (mirror.Revision, bool)
	// behindSince is when a web node started to be behind the target
	// (zero when in sync, and on the controller).
	behindSince() time.Time
	// revisions lists published revisions (controller) or kept releases
	// (web), oldest first, with what the role knows of each.
	revisions() []api.RevisionItem
	// status, checks and meta add the role's parts to /v1/status, to the
	// readiness checks and to the gossip metadata.
	status(*api.Status)
	checkRevision() api.Check
	checks(map[string][]api.Check)
	meta(*gossip.NodeMeta)
}

// newRole returns the role of the config. It does no I/O.
func newRole(a *Agent) (role, error) {
	switch a.cfg.Role {
	case config.RoleController:
		return newController(a), nil
	case config.RoleWeb:
		return newWeb(a), nil
	}
	return nil, fmt.Errorf("role: unknown role %q", a.cfg.Role)
}

// controllerFor returns the controller role for operation what, or an
// ErrConflict naming it on a web node.
func (a *Agent) controllerFor(what string) (*controller, error) {
	if c, ok := a.role.(*controller); ok {
		return c, nil
	}
	return nil, errs.Conflict("%s runs on the controller; this node is a web node", what)
}

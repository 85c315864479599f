package agent

import (
	"errors"
	"fmt"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/errs"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

// A member forgotten on request (`nodeagent forget`, after a scale-in) is
// dropped from gossip's member list on every agent (internal/gossip,
// forget.go). Everything that counts members reads that list: the deploy
// barrier's web nodes the cluster had, the controller's missing web nodes
// (readiness, status, metric, log), /v1/members and the edges' allow lists
// of recent nodes.

var _ api.MemberForgetter = (*Agent)(nil)

// ForgetMember implements api.MemberForgetter.
func (a *Agent) ForgetMember(name string) (api.Member, error) {
	if name == a.cfg.Node {
		return api.Member{}, errs.Invalid("%s is this node: a node cannot forget itself", name)
	}
	m, err := a.gossip.Forget(name)
	switch {
	case errors.Is(err, gossip.ErrMemberAlive):
		return api.Member{}, errs.Conflict("%s is alive: stop its agent first", name)
	case errors.Is(err, gossip.ErrUnknownMember):
		return api.Member{}, errs.NotFound("%s is not a member this node lists", name)
	case err != nil:
		return api.Member{}, fmt.Errorf("forget %s: %w", name, err)
	}
	return api.MemberOf(m), nil
}

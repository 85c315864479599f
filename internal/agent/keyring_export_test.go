package agent

import (
	"net/http"

	"github.com/nodeagent/nodeagent/internal/clustertls"
)

// PeerClient is the client of a's agent-to-agent calls.
func PeerClient(a *Agent) *http.Client { return a.peers }

// ClusterIdentity is a's TLS identity for agent-to-agent calls.
func ClusterIdentity(a *Agent) *clustertls.Identity { return a.id }

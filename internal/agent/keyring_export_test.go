package agent

import "net/http"

// PeerClient is the client of a's agent-to-agent calls.
func PeerClient(a *Agent) *http.Client { return a.peers }

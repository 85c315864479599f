package agent

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nodeagent/nodeagent/internal/gossip"
)

// FreezeMeta stops a from advertising changes of its metadata by gossip, as
// when its updates are slow to spread; /cluster/v1/meta still answers.
func (a *Agent) FreezeMeta() { a.metaFrozen.Store(true) }

// WaitWebNodes is the barrier of a deploy step.
func (a *Agent) WaitWebNodes(ctx context.Context, limit time.Duration, what string, ok func(gossip.NodeMeta) bool) (string, error) {
	return a.waitWebNodes(ctx, limit, what, ok)
}

// SetMissingWait shortens how long an honest barrier waits for missing web
// nodes to come back; the returned func restores it.
func SetMissingWait(d time.Duration) func() {
	old := missingWait
	missingWait = d
	return func() { missingWait = old }
}

// SetRegister writes a cluster register with a raw JSON value, as another
// agent (an older or a broken one) could have written it.
func (a *Agent) SetRegister(key, value string) error {
	_, err := a.gossip.Set(key, json.RawMessage(value))
	return err
}

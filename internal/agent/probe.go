package agent

import (
	"context"
	"sync"
	"time"

	"github.com/nodeagent/nodeagent/internal/gossip"
)

// Direct metadata checks of a deploy barrier (see waitWebNodes).
const (
	directAfter   = time.Second
	directEvery   = 500 * time.Millisecond
	directTimeout = 2 * time.Second
)

// metaProbes asks web nodes for their metadata over the cluster API, at most
// one request per node in flight and one per node every directEvery.
type metaProbes struct {
	a       *Agent
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	answers chan metaAnswer
	asked   map[string]time.Time // node -> when last asked
	busy    map[string]bool
	seen    map[string]gossip.NodeMeta
}

type metaAnswer struct {
	node string
	meta gossip.NodeMeta
	err  error
}

func newMetaProbes(a *Agent) *metaProbes {
	ctx, cancel := context.WithCancel(context.Background())
	return &metaProbes{
		a: a, ctx: ctx, cancel: cancel,
		answers: make(chan metaAnswer),
		asked:   make(map[string]time.Time),
		busy:    make(map[string]bool),
		seen:    make(map[string]gossip.NodeMeta),
	}
}

// ask starts a request to each member not asked within directEvery.
func (p *metaProbes) ask(members []gossip.Member) {
	for _, m := range members {
		if p.busy[m.Name] || time.Since(p.asked[m.Name]) < directEvery || m.Meta.API == "" {
			continue
		}
		p.busy[m.Name], p.asked[m.Name] = true, time.Now()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			meta, err := p.a.peerMeta(p.ctx, m.Meta.API)
			select {
			case p.answers <- metaAnswer{node: m.Name, meta: meta, err: err}:
			case <-p.ctx.Done():
			}
		}()
	}
}

// record keeps an answer; a failed request is only logged, as gossip may
// still deliver.
func (p *metaProbes) record(ans metaAnswer) {
	p.busy[ans.node] = false
	if ans.err != nil {
		p.a.log.Debug("direct metadata check", "node", ans.node, "err", ans.err)
		return
	}
	p.seen[ans.node] = ans.meta
}

func (p *metaProbes) satisfies(node string, ok func(gossip.NodeMeta) bool) bool {
	m, seen := p.seen[node]
	return seen && ok(m)
}

// close stops the requests in flight and waits for them.
func (p *metaProbes) close() {
	p.cancel()
	p.wg.Wait()
}

// peerMeta asks the agent at apiAddr (its cluster API) for the metadata it
// advertises.
func (a *Agent) peerMeta(ctx context.Context, apiAddr string) (gossip.NodeMeta, error) {
	ctx, cancel := context.WithTimeout(ctx, directTimeout)
	defer cancel()
	var m gossip.NodeMeta
	err := a.peerGet(ctx, apiAddr, "/cluster/v1/meta", 64<<10, &m)
	return m, err
}

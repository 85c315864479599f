package gossip

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/hashicorp/memberlist"
)

// NodeMeta is what a node advertises about itself. It travels as compact
// JSON in the memberlist metadata, limited to memberlist.MetaMaxSize (512)
// bytes.
type NodeMeta struct {
	Role    string `json:"r"`             // "controller" | "web"
	API     string `json:"a"`             // host:port of the node's cluster API
	Seq     uint64 `json:"s,omitempty"`   // applied revision seq
	Rev     string `json:"v,omitempty"`   // applied revision id (64 hex)
	Drained bool   `json:"d,omitempty"`   // out of the load balancer
	Ready   bool   `json:"ok,omitempty"`  // readiness passes
	Maint   uint64 `json:"m,omitempty"`   // clock of the maintenance state this node applies
	MaintOn bool   `json:"mo,omitempty"`  // maintenance is in force on this node
	Behind  int64  `json:"b,omitempty"`   // unix time since when the node is behind the target
	Version string `json:"ver,omitempty"` // nodeagent version

	CertExpiry int64 `json:"ce,omitempty"` // unix time the edge's certificate ends
}

// wireMeta is NodeMeta as it travels, with the version of the update: the
// Unix time in milliseconds when the node set it, strictly increasing in a
// process and, the clock permitting, across restarts. memberlist orders
// updates by an incarnation number that restarts at 1 with the process;
// the version lets a receiver see that an update memberlist ignored was
// newer than what it holds (repair.go). Agents that do not send it are
// version 0: never repaired, as before.
type wireMeta struct {
	NodeMeta
	Version int64 `json:"n,omitempty"`
}

func encodeMeta(m NodeMeta, version int64) ([]byte, error) {
	b, err := json.Marshal(wireMeta{NodeMeta: m, Version: version})
	if err != nil {
		return nil, fmt.Errorf("gossip: encode meta: %w", err)
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("%w: meta is %d bytes, max %d", ErrTooLarge, len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

func decodeMeta(b []byte) (NodeMeta, int64, error) {
	var m wireMeta
	if len(b) == 0 {
		return m.NodeMeta, 0, nil
	}
	err := json.Unmarshal(b, &m)
	return m.NodeMeta, m.Version, err
}

// nextMetaVersionLocked returns a version above every one this node used.
func (g *Gossip) nextMetaVersionLocked() int64 {
	g.metaVersion = max(time.Now().UnixMilli(), g.metaVersion+1)
	return g.metaVersion
}

// SetMeta replaces this node's metadata and re-advertises it. It does not
// wait for the update to spread: it is sent to every live member directly
// (metasend.go), gossip carries it too, and push/pull repairs what both
// missed. Metadata larger than memberlist.MetaMaxSize is refused with
// ErrTooLarge. Before Open it only sets what Open will advertise.
func (g *Gossip) SetMeta(m NodeMeta) error {
	if _, err := encodeMeta(m, math.MaxInt64); err != nil {
		return err
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return ErrClosed
	}
	if m == g.meta && g.metaBytes != nil {
		g.mu.Unlock()
		return nil
	}
	b, err := encodeMeta(m, g.nextMetaVersionLocked())
	if err != nil { // unreachable: checked with the longest version
		g.mu.Unlock()
		return err
	}
	g.meta, g.metaBytes = m, b
	g.mu.Unlock()
	g.advertiseMeta()
	g.sendMeta(b)
	return nil
}

// advertiseMeta re-advertises the local metadata until memberlist has
// applied it locally and queued it for gossip. memberlist drops an update
// that races with a refutation (UpdateNode's incarnation is then older than
// the refute's), so the result is checked through the local node's own
// update event, which memberlist delivers before UpdateNode waits for the
// broadcast. That wait is not needed and is cut to metaQueueWait: waiting
// for a full retransmission (seconds when every node updates at once)
// would hold up the caller's next update, e.g. the maintenance state a web
// node applies.
func (g *Gossip) advertiseMeta() {
	ml := g.ml.Load()
	if ml == nil {
		return
	}
	// UpdateNode reads the local node's address outside memberlist's lock:
	// concurrent calls race.
	g.updateMu.Lock()
	defer g.updateMu.Unlock()
	for attempt := 0; attempt < 3 && !g.metaAdvertised(); attempt++ {
		_ = ml.UpdateNode(metaQueueWait) // a timeout only: the update is queued
	}
}

// metaQueueWait is how long advertiseMeta lets UpdateNode wait for its
// broadcast; the timeout error it then returns is expected.
const metaQueueWait = time.Millisecond

// metaAdvertised reports whether memberlist carries the current metadata.
func (g *Gossip) metaAdvertised() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.members[g.cfg.Name]
	return g.closed || ok && r.version == g.metaVersion
}

// Meta returns this node's current metadata.
func (g *Gossip) Meta() NodeMeta {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.meta
}

// localMeta is what the delegate hands to memberlist.
func (g *Gossip) localMeta(limit int) []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.metaBytes) > limit {
		return nil // unreachable: SetMeta and Open check the size
	}
	return g.metaBytes
}

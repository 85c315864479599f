package gossip

import (
	"bytes"

	"github.com/hashicorp/memberlist"
)

// delegate adapts memberlist's callbacks to Gossip; it holds no state.
type delegate struct{ g *Gossip }

var _ memberlist.Delegate = delegate{}

func (d delegate) NodeMeta(limit int) []byte { return d.g.localMeta(limit) }

// NotifyMsg copies msg: memberlist reuses the buffer after the call.
func (d delegate) NotifyMsg(msg []byte) { d.g.handleMsg(bytes.Clone(msg)) }

func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.g.queue.GetBroadcasts(overhead, limit)
}

func (d delegate) LocalState(join bool) []byte { return d.g.localState() }

func (d delegate) MergeRemoteState(buf []byte, join bool) { d.g.mergeState(buf) }

var _ memberlist.AliveDelegate = delegate{}

// NotifyAlive sees every alive message before memberlist judges it (see
// repair.go); it never refuses one. It runs under memberlist's node lock.
func (d delegate) NotifyAlive(n *memberlist.Node) error {
	d.g.sawAlive(n)
	return nil
}

// events adapts memberlist's membership events. memberlist holds its node
// lock while calling them: they must not call back into memberlist.
type events struct{ g *Gossip }

var _ memberlist.EventDelegate = events{}

func (e events) NotifyJoin(n *memberlist.Node)   { e.g.nodeUp(n) }
func (e events) NotifyUpdate(n *memberlist.Node) { e.g.nodeUp(n) }
func (e events) NotifyLeave(n *memberlist.Node)  { e.g.nodeDown(n) }

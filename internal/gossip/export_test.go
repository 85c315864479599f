package gossip

// Kill stops the node without leaving, as a crash would: the others must
// detect it as dead.
func (g *Gossip) Kill() error {
	g.closeOnce.Do(func() { g.closeErr = g.shutdown(false) })
	return g.closeErr
}

// DisableFanOut makes Set and SetMeta rely on gossip alone, as when every
// direct message is lost.
func (g *Gossip) DisableFanOut() { g.noFanOut.Store(true) }

// Idle reports whether nothing waits to be gossiped: both broadcast queues
// hold only their pins. False if memberlist's queue could not be pinned.
func (g *Gossip) Idle() bool {
	return g.mlQueue != nil && g.mlQueue.NumQueued() <= 1 && g.queue.NumQueued() <= 1
}

// PinQueue is pinQueue, for the test of the queue bug it works around.
var PinQueue = pinQueue

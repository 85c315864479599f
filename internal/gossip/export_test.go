package gossip

// Kill stops the node without leaving, as a crash would: the others must
// detect it as dead.
func (g *Gossip) Kill() error {
	g.closeOnce.Do(func() { g.closeErr = g.shutdown(false) })
	return g.closeErr
}

// DisableFanOut makes Set rely on gossip alone, as when every direct
// datagram is lost.
func (g *Gossip) DisableFanOut() { g.noFanOut.Store(true) }

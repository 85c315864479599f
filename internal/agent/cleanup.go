package agent

// startCleanup removes, in the background, the release trees a web node's
// mirror set aside (crash leftovers, a partial release that cannot be
// resumed): started once the edge and the API serve, so that a large
// leftover never delays them. It stops with the agent; what is left is
// removed after the next start.
func (a *Agent) startCleanup() {
	w, ok := a.role.(*web)
	if !ok || w.rels == nil {
		return
	}
	a.wg.Go(func() { w.rels.RunCleanup(a.ctx) })
}

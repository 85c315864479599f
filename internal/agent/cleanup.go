package agent

// startCleanup removes, in the background, the release trees the mirror
// set aside (crash leftovers, a partial release that cannot be resumed):
// started once the edge and the API serve, so that a large leftover never
// delays them. It stops with the agent; what is left is removed after the
// next start.
func (a *Agent) startCleanup() {
	if a.rels == nil {
		return
	}
	a.wg.Go(func() { a.rels.RunCleanup(a.ctx) })
}

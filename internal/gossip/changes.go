package gossip

import "sync"

// Changes subscribes to cluster changes: the channel (capacity 1, so
// bursts coalesce) is signalled on any member join, leave, failure or
// metadata update, and on any register change. Re-read Members and Get
// after a signal. The returned func cancels the subscription and closes
// the channel; it may be called more than once.
func (g *Gossip) Changes() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	g.mu.Lock()
	g.subs[ch] = struct{}{}
	g.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			g.mu.Lock()
			delete(g.subs, ch)
			close(ch)
			g.mu.Unlock()
		})
	}
}

func (g *Gossip) notifyLocked() {
	for ch := range g.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

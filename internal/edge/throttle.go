package edge

import (
	"sync"
	"time"
)

// failureLogInterval spaces the log lines about a failing backend: when it
// is down every request fails, and one line per request would flood the
// log.
const failureLogInterval = 10 * time.Second

// throttle lets one event through per interval and counts the others.
type throttle struct {
	mu      sync.Mutex
	next    time.Time
	dropped int
}

// allow reports whether an event at now may be logged and how many were
// held back since the last one that was.
func (t *throttle) allow(now time.Time, interval time.Duration) (ok bool, dropped int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Before(t.next) {
		t.dropped++
		return false, 0
	}
	dropped, t.dropped = t.dropped, 0
	t.next = now.Add(interval)
	return true, dropped
}
